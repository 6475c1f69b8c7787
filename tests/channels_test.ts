import { assertClose, f32, freshSeed, randArray, testGpu } from "./util.ts";
import { concatChannels, padChannels, sliceChannels } from "../src/ops/channels.ts";
import * as ad from "../src/autodiff/channels.ts";
import { backward, constant, leaf } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";

const gpu = await testGpu();

/** float64 reference: channels [start, start+count) of [n, c, s]. */
function refSlice(x: ArrayLike<number>, n: number, c: number, s: number, start: number, count: number) {
  const out = new Float64Array(n * count * s);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < count; k++) {
      for (let j = 0; j < s; j++) out[(i * count + k) * s + j] = x[(i * c + start + k) * s + j];
    }
  }
  return out;
}

function refConcat(xs: ArrayLike<number>[], n: number, cs: number[], s: number) {
  const cout = cs.reduce((a, b) => a + b);
  const out = new Float64Array(n * cout * s);
  let off = 0;
  xs.forEach((x, k) => {
    for (let i = 0; i < n; i++) {
      for (let ch = 0; ch < cs[k]; ch++) {
        for (let j = 0; j < s; j++) out[(i * cout + off + ch) * s + j] = x[(i * cs[k] + ch) * s + j];
      }
    }
    off += cs[k];
  });
  return out;
}

function refPad(x: ArrayLike<number>, n: number, cx: number, s: number, start: number, c: number) {
  const out = new Float64Array(n * c * s);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < cx; k++) {
      for (let j = 0; j < s; j++) out[(i * c + start + k) * s + j] = x[(i * cx + k) * s + j];
    }
  }
  return out;
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

Deno.test("concatChannels: forward matches reference (2, 3 and 17 inputs, NCHW and [N,C])", async () => {
  const cases: { n: number; cs: number[]; rest: number[] }[] = [
    { n: 3, cs: [5, 2], rest: [7, 3] },
    { n: 2, cs: [1, 4, 3], rest: [5, 5] },
    { n: 4, cs: [3, 6], rest: [] },
    // more inputs than storage bindings per dispatch on most adapters: split into several dispatches
    { n: 2, cs: Array.from({ length: 17 }, (_, k) => 1 + (k % 3)), rest: [3, 1] },
  ];
  for (const { n, cs, rest } of cases) {
    const seed = freshSeed();
    const s = size(rest);
    const xs = cs.map((c, k) => randArray(n * c * s, seed + k));
    const ins = xs.map((x, k) => gpu.tensor(f32(x), [n, cs[k], ...rest]));
    const before = gpu.stats.dispatches;
    const out = concatChannels(gpu, ins);
    // one gather (plus the poisoning fill) unless the inputs exceed the storage bindings of one dispatch
    const limit = (gpu.adapter.limits.maxStorageBuffersPerShaderStage ?? 8) - 1;
    const want = 1 + Math.ceil(cs.length / limit);
    if (gpu.stats.dispatches - before !== want) {
      throw new Error(`${gpu.stats.dispatches - before} dispatches`);
    }
    if (out.shape.join() !== [n, cs.reduce((a, b) => a + b), ...rest].join()) {
      throw new Error(`shape [${out.shape}]`);
    }
    assertClose(await gpu.read(out), refConcat(xs, n, cs, s), 1e-7, `concat cs=${cs} seed=${seed}`);
  }
});

Deno.test("sliceChannels and padChannels: forward matches reference", async () => {
  const cases = [
    { shape: [3, 7, 5, 3], start: 2, count: 4 },
    { shape: [2, 5, 4, 4], start: 0, count: 5 },
    { shape: [2, 9], start: 8, count: 1 },
  ];
  for (const { shape, start, count } of cases) {
    const seed = freshSeed();
    const [n, c] = shape, s = size(shape.slice(2));
    const x = randArray(size(shape), seed);
    const sl = sliceChannels(gpu, gpu.tensor(f32(x), shape), start, count);
    assertClose(
      await gpu.read(sl),
      refSlice(x, n, c, s, start, count),
      1e-7,
      `slice [${shape}] seed=${seed}`,
    );
    const small = randArray(n * count * s, seed + 1);
    const pad = padChannels(gpu, gpu.tensor(f32(small), [n, count, ...shape.slice(2)]), start, c);
    assertClose(
      await gpu.read(pad),
      refPad(small, n, count, s, start, c),
      1e-7,
      `pad [${shape}] seed=${seed}`,
    );
  }
});

Deno.test("concat/slice autodiff: gradients are slices and zero-padded scatters", async () => {
  const seed = freshSeed();
  const n = 2, rest = [3, 5], s = 15, ca = 3, cb = 4;
  const a = randArray(n * ca * s, seed), b = randArray(n * cb * s, seed + 1);
  const av = leaf(gpu.tensor(f32(a), [n, ca, ...rest])), bv = constant(gpu.tensor(f32(b), [n, cb, ...rest]));
  const cv = leaf(gpu.tensor(f32(randArray(n * 2 * s, seed + 2)), [n, 2, ...rest]));
  // y = slice(concat(a, b, c), 1, 7): covers part of a, all of b, none of c
  const dy = randArray(n * 5 * s, seed + 3);
  scope(() => {
    const y = ad.sliceChannels(ad.concatChannels([av, bv, cv]), 1, 5);
    backward(y, gpu.tensor(f32(dy), [n, 5, ...rest]));
  });
  // d/dconcat = pad(dy, 1, 9); d/da = its channels [0, 3); d/dc = channels [7, 9) = 0
  const dcat = refPad(dy, n, 5, s, 1, ca + cb + 2);
  assertClose(await gpu.read(av.grad!), refSlice(dcat, n, 9, s, 0, ca), 1e-7, `da seed=${seed}`);
  const dc = await gpu.read(cv.grad!);
  if (dc.some((v) => v !== 0)) throw new Error(`dc must be zero, seed=${seed}`);
  if (bv.grad) throw new Error("a constant received a gradient");
});
