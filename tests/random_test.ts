import { assertClose, freshSeed, rng, testGpu } from "./util.ts";
import {
  advanceCounter,
  bernoulli,
  bernoulliThreshold,
  boxMullerCpu,
  dropoutMask,
  keyWords,
  normal,
  philoxCpu,
  randomBits,
  randomBitsCpu,
  rngKey,
  rngKeys,
  uniform,
  unitCpu,
} from "../src/ops/random.ts";
import { scope } from "../src/tensor.ts";

const gpu = await testGpu();

/** A fresh u53 seed (two fresh u32 halves), so that the high key word is exercised too. */
const freshSeed53 = () => freshSeed() + (freshSeed() & 0x1fffff) * 2 ** 32;

const hex = (a: ArrayLike<number>) => Array.from(a, (x) => x.toString(16).padStart(8, "0")).join(" ");

function assertEqualBits(out: Uint32Array, ref: Uint32Array, what: string): void {
  if (out.length !== ref.length) throw new Error(`${what}: length ${out.length} vs ${ref.length}`);
  for (let i = 0; i < out.length; i++) {
    if (out[i] !== ref[i]) throw new Error(`${what}: element ${i} is ${out[i]} not ${ref[i]}`);
  }
}

/** Pearson correlation of two equally long arrays. */
function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ma = 0, mb = 0;
  for (let i = 0; i < a.length; i++) (ma += a[i]), (mb += b[i]);
  ma /= a.length;
  mb /= b.length;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < a.length; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

/** Standard normal CDF via erfc (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(
    -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
                      t *
                        (0.27886807 +
                          t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return x >= 0 ? 1 - 0.5 * erfc : 0.5 * erfc;
}

/** Kolmogorov-Smirnov statistic of a sample against a continuous CDF. */
function ksStatistic(sample: Float32Array, cdf: (x: number) => number): number {
  const s = Float64Array.from(sample).sort();
  const n = s.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const f = cdf(s[i]);
    d = Math.max(d, f - i / n, (i + 1) / n - f);
  }
  return d;
}

Deno.test("philoxCpu: Random123 known-answer vectors (kat_vectors, philox4x32 10)", () => {
  const cases: [number[], number[], string][] = [
    [[0, 0, 0, 0], [0, 0], "6627e8d5 e169c58d bc57ac4c 9b00dbd8"],
    [
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
      [0xffffffff, 0xffffffff],
      "408f276d 41c83b0e a20bc7c6 6d5451fd",
    ],
    [
      [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
      [0xa4093822, 0x299f31d0],
      "d16cfe09 94fdcceb 5001e420 24126ea1",
    ],
  ];
  for (const [ctr, key, want] of cases) {
    const got = hex(philoxCpu(ctr, key));
    if (got !== want) throw new Error(`philox(${hex(ctr)}; ${hex(key)}) = ${got}, want ${want}`);
  }
});

Deno.test("randomBits: GPU Philox equals the CPU reference bit for bit (odd sizes, sites, high key words)", async () => {
  for (const [n, site] of [[1, 0], [7, 3], [4099, 0], [70001, 12345]]) {
    const seed = freshSeed53(), stream = freshSeed(), counter = freshSeed();
    const key = rngKey(gpu, seed, stream, counter);
    const out = await gpu.readU32(randomBits(gpu, [n], key, site));
    const ref = randomBitsCpu(n, keyWords(seed, stream, counter), site);
    assertEqualBits(out, ref, `bits n=${n} site=${site} seed=${seed} stream=${stream} counter=${counter}`);
  }
  // extreme words in every runtime key slot and the baked site
  const key = gpu.tensor(Uint32Array.of(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), [4]);
  const got = await gpu.readU32(randomBits(gpu, [4], key, 0xffffffff));
  const want = philoxCpu([0, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]);
  assertEqualBits(got, want, "all-ones key words with site 0xffffffff");
});

Deno.test("uniform, bernoulli, dropoutMask: bit-exact vs CPU; uniform never reaches 1", async () => {
  const seed = freshSeed53(), stream = freshSeed() >>> 16, counter = 7;
  const words = keyWords(seed, stream, counter);
  const key = rngKey(gpu, seed, stream, counter);
  const what = `seed=${seed} stream=${stream}`;
  for (const n of [5, 1023, 40000]) {
    const bits = randomBitsCpu(n, words, 2);
    const u = await gpu.read(uniform(gpu, [n], key, 2));
    assertEqualBits(
      new Uint32Array(u.buffer),
      new Uint32Array(Float32Array.from(bits, unitCpu).buffer),
      `uniform n=${n} ${what}`,
    );
    if (u.some((v) => !(v >= 0 && v < 1))) throw new Error(`uniform outside [0, 1) ${what}`);
    for (const p of [0, 0.1, 0.5, 1 / 3, 1]) {
      const t = bernoulliThreshold(p);
      const b = await gpu.read(bernoulli(gpu, [n], key, p, 2));
      assertEqualBits(
        new Uint32Array(b.buffer),
        new Uint32Array(Float32Array.from(bits, (w) => (w >>> 8) < t ? 1 : 0).buffer),
        `bernoulli p=${p} n=${n} ${what}`,
      );
      if (p === 1) continue;
      const scale = Math.fround(1 / (1 - p));
      const m = await gpu.read(dropoutMask(gpu, [n], key, p, 2));
      assertEqualBits(
        new Uint32Array(m.buffer),
        new Uint32Array(Float32Array.from(b, (v) => v === 1 ? 0 : scale).buffer),
        `dropout p=${p} n=${n} ${what}`,
      );
    }
  }
  // the 24-bit mapping itself: the largest word gives the largest float below 1
  if (unitCpu(0xffffffff) !== 1 - 2 ** -24) throw new Error("unit(0xffffffff) must be 1 - 2^-24");
});

Deno.test("normal: matches float64 Box-Muller of the same words; same key twice is bit-identical", async () => {
  for (const n of [3, 1001, 65537]) {
    const seed = freshSeed53(), stream = freshSeed();
    const words = keyWords(seed, stream, 0);
    const key = rngKey(gpu, seed, stream);
    const bits = randomBitsCpu(n + 3, words, 5);
    const ref = new Float64Array(n);
    for (let i = 0; i < n; i += 2) {
      const [z0, z1] = boxMullerCpu(bits[i], bits[i + 1]);
      ref[i] = z0;
      if (i + 1 < n) ref[i + 1] = z1;
    }
    const a = await gpu.read(normal(gpu, [n], key, 5));
    assertClose(a, ref, 1e-5, `normal n=${n} seed=${seed} stream=${stream}`);
    const b = await gpu.read(normal(gpu, [n], key, 5));
    assertEqualBits(new Uint32Array(b.buffer), new Uint32Array(a.buffer), `normal rerun n=${n} seed=${seed}`);
  }
});

Deno.test("normal and bernoulli at u = 0 (a key found offline whose first word has 24 zero top bits)", async () => {
  const words = keyWords(1234, 0, 19225698);
  const w = philoxCpu([0, 0, words[2], words[3]], [words[0], words[1]]);
  if (w[0] >>> 8 !== 0) throw new Error(`fixture no longer hits u = 0: ${hex(w)}`);
  const z = await gpu.read(normal(gpu, [4], rngKey(gpu, 1234, 0, 19225698)));
  const radius = Math.hypot(z[0], z[1]), rmax = Math.sqrt(-2 * Math.log(2 ** -24));
  if (!(Math.abs(radius - rmax) < 1e-4 * rmax)) {
    throw new Error(`radius ${radius} at the smallest u1, want ${rmax}`);
  }
  // the same word is u = 0 for uniform and bernoulli: the threshold's edge, both ways
  const never = await gpu.read(bernoulli(gpu, [4], rngKey(gpu, 1234, 0, 19225698), 0));
  const smallest = await gpu.read(bernoulli(gpu, [4], rngKey(gpu, 1234, 0, 19225698), 2 ** -24));
  if (never[0] !== 0 || smallest[0] !== 1) {
    throw new Error(`bernoulli at u = 0: p=0 -> ${never[0]}, p=2^-24 -> ${smallest[0]}`);
  }
});

/** Run a statistical check on a fresh key; on failure retry once on another fresh key, so a correct
 * generator fails with probability alpha^2 while a wrong one still fails both. */
async function twice(check: (seed: number) => Promise<string | null>): Promise<void> {
  const s1 = freshSeed53();
  const e1 = await check(s1);
  if (e1 === null) return;
  const s2 = freshSeed53();
  const e2 = await check(s2);
  if (e2 !== null) throw new Error(`${e1} (seed=${s1}); ${e2} (seed=${s2})`);
}

Deno.test("normal: 1e6 draws have mean, variance and KS statistic of a standard normal", async () => {
  const n = 1_000_000, crit = 1.95 / Math.sqrt(n); // 0.1% critical value of the KS statistic
  await twice(async (seed) => {
    const z = await gpu.read(scope(() => normal(gpu, [n], rngKey(gpu, seed, 1, 2))));
    let s = 0, s2 = 0;
    for (const v of z) (s += v), (s2 += v * v);
    const mean = s / n, variance = s2 / n - mean * mean;
    const d = ksStatistic(z, normalCdf);
    if (Math.abs(mean) < 0.005 && Math.abs(variance - 1) < 0.01 && d < crit) return null;
    return `mean ${mean.toFixed(5)} variance ${variance.toFixed(5)} KS ${d.toExponential(3)} (crit ${
      crit.toExponential(3)
    })`;
  });
});

Deno.test("uniform: 1e6 draws pass KS against U(0, 1)", async () => {
  const n = 1_000_000, crit = 1.95 / Math.sqrt(n);
  await twice(async (seed) => {
    const u = await gpu.read(scope(() => uniform(gpu, [n], rngKey(gpu, seed, 3, 4))));
    const d = ksStatistic(u, (x) => Math.min(Math.max(x, 0), 1));
    return d < crit ? null : `uniform KS ${d.toExponential(3)} >= ${crit.toExponential(3)}`;
  });
});

Deno.test("independence: other stream, counter, site or seed -> different and uncorrelated", async () => {
  const n = 200_000, seed = freshSeed53(), bound = 5 / Math.sqrt(n); // 5 sigma of a null correlation
  const base = await gpu.read(normal(gpu, [n], rngKey(gpu, seed, 10, 20), 0));
  const variants: [string, () => ReturnType<typeof normal>][] = [
    ["stream+1", () => normal(gpu, [n], rngKey(gpu, seed, 11, 20), 0)],
    ["counter+1", () => normal(gpu, [n], rngKey(gpu, seed, 10, 21), 0)],
    ["site 1", () => normal(gpu, [n], rngKey(gpu, seed, 10, 20), 1)],
    ["seed+1", () => normal(gpu, [n], rngKey(gpu, seed + 1, 10, 20), 0)],
    ["seed+2^32", () => normal(gpu, [n], rngKey(gpu, seed + 2 ** 32, 10, 20), 0)],
  ];
  for (const [name, make] of variants) {
    const other = await gpu.read(make());
    let equal = 0;
    for (let i = 0; i < n; i++) if (other[i] === base[i]) equal++;
    const r = correlation(base, other);
    if (equal > 5 || !(Math.abs(r) < bound)) {
      throw new Error(`${name}: ${equal} equal elements, correlation ${r.toExponential(3)} seed=${seed}`);
    }
  }
});

Deno.test("key table and advanceCounter: loop of draws reproduces explicit keys, no upload or compile", async () => {
  const n = 1000, seed = freshSeed53(), steps = 6;
  const specs = Array.from({ length: 4 }, (_, j) => ({ seed: seed + j, stream: j * 7, counter: 100 + j }));
  const { table, keys } = rngKeys(gpu, specs);
  const walking = rngKey(gpu, seed, 9, 0xfffffffe); // the counter wraps at 2^32
  // warm up the kernels, then count: the loop must neither compile nor submit (an upload would flush)
  normal(gpu, [n], keys[0]).dispose();
  advanceCounter(gpu, walking, 3);
  gpu.upload(walking, keyWords(seed, 9, 0xfffffffe));
  const before = { ...gpu.stats };
  const drawn = [];
  for (let s = 0; s < steps; s++) {
    drawn.push(normal(gpu, [n], keys[s % keys.length]), normal(gpu, [n], walking));
    advanceCounter(gpu, walking, 3);
  }
  const pipelines = gpu.stats.pipelines - before.pipelines, submits = gpu.stats.submits - before.submits;
  if (pipelines !== 0 || submits !== 0) {
    throw new Error(`a loop of draws compiled ${pipelines} pipelines and submitted ${submits} times`);
  }
  for (let s = 0; s < steps; s++) {
    const spec = specs[s % keys.length];
    const fromTable = await gpu.readU32(drawn[2 * s]);
    const ref = await gpu.readU32(normal(gpu, [n], rngKey(gpu, spec.seed, spec.stream, spec.counter)));
    assertEqualBits(fromTable, ref, `table entry ${s % keys.length} seed=${seed}`);
    const counter = (0xfffffffe + 3 * s) % 2 ** 32;
    const walked = await gpu.readU32(drawn[2 * s + 1]);
    const direct = await gpu.readU32(normal(gpu, [n], rngKey(gpu, seed, 9, counter)));
    assertEqualBits(walked, direct, `advanced counter step ${s} (counter ${counter}) seed=${seed}`);
  }
  const finalWords = await gpu.readU32(walking);
  assertEqualBits(
    finalWords,
    keyWords(seed, 9, (0xfffffffe + 3 * steps) % 2 ** 32),
    `final key seed=${seed}`,
  );
  table.dispose();
});

Deno.test("randomBits: a draw over more than 65535 x 64 blocks (2-D grid) matches the CPU at sampled elements", async () => {
  const n = 65535 * 64 * 4 + 4 * 1000 + 3, seed = freshSeed53(), stream = freshSeed();
  const words = keyWords(seed, stream, 1);
  const out = await gpu.readU32(scope(() => randomBits(gpu, [n], rngKey(gpu, seed, stream, 1))));
  const r = rng(seed), picks = [0, 1, 2, 3, n - 1, n - 2, n - 5];
  for (let k = 0; k < 2000; k++) picks.push(n - 1 - Math.floor(r() * 8000), Math.floor(r() * n));
  for (const i of picks) {
    const want = philoxCpu([Math.floor(i / 4), 0, words[2], words[3]], [words[0], words[1]])[i % 4];
    if (out[i] !== want) {
      throw new Error(`element ${i} of ${n}: ${out[i]} not ${want} seed=${seed} stream=${stream}`);
    }
  }
});

Deno.test("random: bad keys and parameters are rejected", () => {
  const bad: [string, () => unknown][] = [
    ["f32 key", () => uniform(gpu, [4], gpu.tensor(new Float32Array(4)))],
    ["short key", () => normal(gpu, [4], gpu.tensor(new Uint32Array(3)))],
    ["p > 1", () => bernoulli(gpu, [4], rngKey(gpu, 1), 1.5)],
    ["dropout p = 1", () => dropoutMask(gpu, [4], rngKey(gpu, 1), 1)],
    ["negative seed", () => rngKey(gpu, -1)],
    ["stream >= 2^32", () => rngKey(gpu, 1, 2 ** 32)],
  ];
  for (const [what, f] of bad) {
    let threw = false;
    try {
      f();
    } catch {
      threw = true;
    }
    if (!threw) throw new Error(`${what} was accepted`);
  }
});
