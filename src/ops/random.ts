/**
 * Counter-based GPU random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011; the generator of Random123, cuRAND and PyTorch).
 *
 * Every draw is a pure function of (seed, stream, counter, site, element index), so any draw can be
 * reproduced bit for bit on any run:
 *   element i of a draw = word (i % 4) of philox(counter = [i / 4, site, stream, counter],
 *                                                 key = [seedLo, seedHi])
 * - `seed` (53-bit integer) is the Philox key; `stream` separates independent users (one per image,
 *   per attack restart...); `counter` numbers the draws of one stream (a step counter); `site` is a baked
 *   small integer that splits one key into independent sub-streams (one per dropout layer, say) without
 *   new keys. Changing any of them changes the Philox input, hence gives an independent draw.
 * - uniform: the top 24 bits of a word, u = (w >> 8) * 2^-24 in [0, 1 - 2^-24] (exact in f32, never 1.0).
 * - normal: Box-Muller on the word pairs (w0, w1) -> elements 4b, 4b+1 and (w2, w3) -> 4b+2, 4b+3, with
 *   radius sqrt(-2 ln u1), u1 = ((w0 >> 8) + 1) * 2^-24 in (0, 1] (never log 0; |z| <= 5.77) and angle
 *   2 pi (w1 >> 8) 2^-24 - pi. uniform and normal of the same (key, site) use the same words: use another
 *   site or counter when both are needed independently.
 * - bernoulli(p): 1 where (w >> 8) < ceil(p 2^24) (that is u < p, decided in integers), else 0.
 *
 * The key is a runtime input (a u32[4] GPU tensor: seedLo, seedHi, stream, counter), so a loop of
 * draws compiles nothing and uploads nothing: bind entries of a key table (`rngKeys`) or bump the
 * counter on the GPU (`advanceCounter`). The counter word wraps at 2^32.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32, wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import { Tensor } from "../tensor.ts";
import template from "../../shaders/philox.wgsl" with { type: "text" };

/** Byte stride of key-table entries: WebGPU's default minStorageBufferOffsetAlignment (the device is
 * created with the default, so entries must sit at multiples of 256 bytes to be bound on their own). */
export const KEY_STRIDE_BYTES = 256;

export interface RngKeySpec {
  seed: number;
  stream?: number;
  counter?: number;
}

/** The four key words (seedLo, seedHi, stream, counter) of a spec. */
export function keyWords(seed: number, stream = 0, counter = 0): Uint32Array {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`rng key: seed ${seed} is not a u53`);
  for (const [name, v] of [["stream", stream], ["counter", counter]] as const) {
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** 32) {
      throw new RangeError(`rng key: ${name} ${v} is not a u32`);
    }
  }
  return Uint32Array.of(seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0, stream, counter);
}

/** One key tensor (one upload). */
export function rngKey(gpu: Gpu, seed: number, stream = 0, counter = 0): Tensor {
  return gpu.tensor(keyWords(seed, stream, counter), [4]);
}

/** A key table uploaded once; `keys[j]` is a u32[4] view at byte offset 256 j that a loop can bind
 * without uploads. Dispose `table` (the views share its buffer). */
export interface RngKeyTable {
  readonly table: Tensor;
  readonly keys: readonly Tensor[];
}

export function rngKeys(gpu: Gpu, specs: readonly RngKeySpec[]): RngKeyTable {
  if (specs.length === 0) throw new RangeError("rngKeys: no keys");
  const stride = KEY_STRIDE_BYTES / 4;
  const data = new Uint32Array(specs.length * stride);
  specs.forEach((s, j) => data.set(keyWords(s.seed, s.stream, s.counter), j * stride));
  const table = gpu.tensor(data, [specs.length, stride]);
  const keys = specs.map((_, j) =>
    new Tensor(gpu, table.buffer, [4], "u32", table.offset + j * KEY_STRIDE_BYTES, false)
  );
  return { table, keys };
}

/** counter += by on the GPU, in command order (draws recorded before see the old counter). */
export function advanceCounter(gpu: Gpu, key: Tensor, by = 1): Tensor {
  checkKey("advanceCounter", key);
  if (!Number.isInteger(by) || by < 0 || by >= 2 ** 32) throw new RangeError(`advanceCounter: by ${by}`);
  const k = gpu.kernel(`philox:advance:${by}`, () => wgsl(template, { ADVANCE: true, BY: by }));
  gpu.dispatch(k, [key], 1);
  return key;
}

/** Raw Philox words (u32). */
export function randomBits(gpu: Gpu, shape: readonly number[], key: Tensor, site = 0): Tensor {
  return draw(gpu, "bits", shape, key, site, { BITS: true }, "u32");
}

/** Uniform in [0, 1) on the 2^-24 grid. */
export function uniform(gpu: Gpu, shape: readonly number[], key: Tensor, site = 0): Tensor {
  return draw(gpu, "uniform", shape, key, site, { UNIFORM: true });
}

/** Standard normal (Box-Muller). */
export function normal(gpu: Gpu, shape: readonly number[], key: Tensor, site = 0): Tensor {
  return draw(gpu, "normal", shape, key, site, { NORMAL: true });
}

/** 1 with probability p, else 0. */
export function bernoulli(gpu: Gpu, shape: readonly number[], key: Tensor, p: number, site = 0): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`bernoulli: p ${p} outside [0, 1]`);
  const threshold = bernoulliThreshold(p);
  return draw(gpu, `bernoulli${threshold}`, shape, key, site, {
    BERNOULLI: true,
    THRESHOLD: threshold,
    HIT: "1.0",
    MISS: "0.0",
  });
}

/** Inverted-dropout mask: 0 with probability p (exactly where bernoulli(p) is 1), else 1 / (1 - p). */
export function dropoutMask(gpu: Gpu, shape: readonly number[], key: Tensor, p: number, site = 0): Tensor {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropoutMask: p ${p} outside [0, 1)`);
  const threshold = bernoulliThreshold(p);
  const scale = f32(Math.fround(1 / (1 - p)));
  return draw(gpu, `dropout${threshold}:${scale}`, shape, key, site, {
    BERNOULLI: true,
    THRESHOLD: threshold,
    HIT: "0.0",
    MISS: scale,
  });
}

/** The integer threshold T with u < p  <=>  (w >> 8) < T (p = 1 gives 2^24: always). */
export function bernoulliThreshold(p: number): number {
  return Math.ceil(p * 2 ** 24);
}

function checkKey(op: string, key: Tensor): void {
  if (key.dtype !== "u32" || key.size !== 4) {
    throw new ShapeError(op, `key must be a u32[4] tensor (seedLo, seedHi, stream, counter), got ${key}`);
  }
}

function draw(
  gpu: Gpu,
  mode: string,
  shape: readonly number[],
  key: Tensor,
  site: number,
  consts: Record<string, string | number | boolean>,
  dtype: "f32" | "u32" = "f32",
): Tensor {
  checkKey(mode, key);
  if (!Number.isInteger(site) || site < 0 || site >= 2 ** 32) throw new RangeError(`${mode}: site ${site}`);
  const out = gpu.empty(shape, dtype);
  const n = out.size;
  const blocks = Math.ceil(n / 4);
  const k = gpu.kernel(
    `philox:${mode}:${n}:${site}`,
    () => wgsl(template, { ...consts, N: n, BLOCKS: blocks, SITE: site }),
  );
  gpu.dispatch(k, [key, out], Math.ceil(blocks / 64));
  return out;
}

// ---------------------------------------------------------------- CPU reference

const M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

/** High 32 bits of a u32 x u32 product (float64 holds each 16x32-bit partial product exactly). */
function mulhi(a: number, b: number): number {
  const lo = (a & 0xffff) * b;
  const hi = (a >>> 16) * b;
  // a b = hi 2^16 + lo; take floor(/ 2^32) without losing bits
  return Math.floor((hi + Math.floor(lo / 65536)) / 65536) >>> 0;
}

/** Philox4x32-10 on the CPU: the reference the GPU kernel must match bit for bit. */
export function philoxCpu(counter: ArrayLike<number>, key: ArrayLike<number>): Uint32Array {
  let [x0, x1, x2, x3] = [counter[0] >>> 0, counter[1] >>> 0, counter[2] >>> 0, counter[3] >>> 0];
  let k0 = key[0] >>> 0, k1 = key[1] >>> 0;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, x0), lo0 = Math.imul(M0, x0) >>> 0;
    const hi1 = mulhi(M1, x2), lo1 = Math.imul(M1, x2) >>> 0;
    [x0, x1, x2, x3] = [(hi1 ^ x1 ^ k0) >>> 0, lo1, (hi0 ^ x3 ^ k1) >>> 0, lo0];
  }
  return Uint32Array.of(x0, x1, x2, x3);
}

/** The raw words of an n-element draw, as `randomBits` produces them. */
export function randomBitsCpu(n: number, words: ArrayLike<number>, site = 0): Uint32Array {
  const out = new Uint32Array(n);
  const key = [words[0], words[1]];
  for (let b = 0; b * 4 < n; b++) {
    const w = philoxCpu([b, site, words[2], words[3]], key);
    for (let j = 0; j < 4 && b * 4 + j < n; j++) out[b * 4 + j] = w[j];
  }
  return out;
}

/** uniform of a word, exactly as the GPU computes it. */
export const unitCpu = (w: number): number => (w >>> 8) * 2 ** -24;

/** Box-Muller of a word pair in float64 (the GPU computes the same formula in f32). */
export function boxMullerCpu(a: number, b: number): [number, number] {
  const u = ((a >>> 8) + 1) * 2 ** -24;
  const theta = unitCpu(b) * 2 * Math.PI - Math.PI;
  const r = Math.sqrt(-2 * Math.log(u));
  return [r * Math.cos(theta), r * Math.sin(theta)];
}
