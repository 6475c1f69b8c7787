import { assertClose, f32, finiteDiff, freshSeed, randArray, randn, relErr, testGpu } from "./util.ts";
import { clipMargin, refStep } from "./diffusion_reference.ts";
import { backward, constant, leaf, type Var } from "../src/autodiff/var.ts";
import * as ad from "../src/autodiff/elementwise.ts";
import { ShapeError } from "../src/gpu/errors.ts";
import { rngKey } from "../src/ops/random.ts";
import { sizeClass } from "../src/gpu/pool.ts";
import type { Tensor } from "../src/tensor.ts";
import { DEFAULT_SCHEDULE, generationTimesteps, reverseTimesteps } from "../src/diffusion/schedule.ts";
import {
  drawNoiseSet,
  type EpsModel,
  generate,
  type NoiseSet,
  purifyPipeline,
  qSample,
  reverseDiffuse,
  reverseStep,
  stepCoefficients,
  type StepRule,
} from "../src/diffusion/sampler.ts";

const gpu = await testGpu();
const sched = DEFAULT_SCHEDULE;
const F64 = Float64Array;
type F64 = Float64Array<ArrayBufferLike>;

const RULES: StepRule[] = [
  { sampler: "ddpm", variance: "fixed_large", eta: 0 },
  { sampler: "ddpm", variance: "fixed_small", eta: 0 },
  { sampler: "ddim", variance: "fixed_small", eta: 0 },
  { sampler: "ddim", variance: "fixed_small", eta: 0.5 },
];
const ruleName = (r: StepRule) => (r.sampler === "ddpm" ? `ddpm ${r.variance}` : `ddim eta ${r.eta}`);
const optionsOf = (r: StepRule) => (r.sampler === "ddpm" ? { sampler: r.sampler, variance: r.variance } : {
  sampler: r.sampler,
  eta: r.eta,
});
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const read64 = async (t: Tensor) => F64.from(await gpu.read(t));
const upload = (a: ArrayLike<number>, shape: readonly number[]) => gpu.tensor(f32(a), shape);

// ---------------------------------------------------------------- float64 references

/** The fake eps-model, built from autodiff ops: eps = 0.3 x + 0.1 tanh(x) (t / 1000). */
const fakeModel: EpsModel = (x: Var, t: Tensor): Var => {
  const perSample = ad.asPerSample(ad.mulScalar(constant(t), 0.1 / 1000), x.shape.length);
  return ad.add(ad.mulScalar(x, 0.3), ad.mul(ad.tanh(x), perSample));
};
const fakeModelRef = (x: F64, t: number): F64 => x.map((v) => 0.3 * v + 0.1 * Math.tanh(v) * (t / 1000));

/** The reverse chain with the fake model; also returns every step's unclipped x0. */
function refReverse(
  xT: F64,
  ts: readonly number[],
  rule: StepRule,
  noises: readonly F64[],
  clip = true,
): { out: F64; x0raws: F64[] } {
  let x = xT;
  const x0raws: F64[] = [];
  ts.forEach((t, k) => {
    const r = refStep(x, fakeModelRef(x, t), noises[k] ?? null, t, ts[k + 1] ?? -1, rule, clip);
    x0raws.push(r.x0raw);
    x = r.out;
  });
  return { out: x, x0raws };
}

function refQSample(x0: F64, ts: readonly number[], noise: F64): F64 {
  const per = x0.length / ts.length;
  return x0.map((v, i) => {
    const abar = sched.alphaBar[ts[Math.floor(i / per)]];
    return Math.sqrt(abar) * v + Math.sqrt(1 - abar) * noise[i];
  });
}

const clippedCount = (x0raws: readonly F64[]) =>
  x0raws.reduce((n, a) => n + a.filter((v) => Math.abs(v) > 1).length, 0);

async function readNoiseSet(set: NoiseSet): Promise<{ forward: F64; reverse: F64[] }> {
  // one read at a time: reads share the device's staging buffer
  const reverse: F64[] = [];
  for (const t of set.reverse) reverse.push(await read64(t));
  return { forward: await read64(set.forward), reverse };
}

// ---------------------------------------------------------------- tests

Deno.test("qSample: scalar and per-sample t vs float64, gradient w.r.t. x0 vs finite differences", async () => {
  for (const shape of [[2, 3, 5, 5], [3, 2, 4, 4], [5, 7]]) {
    const seed = freshSeed(), n = size(shape), N = shape[0];
    const x0 = randArray(n, seed), noise = randn(n, seed + 1), dy = randArray(n, seed + 2);
    const perSample = Array.from({ length: N }, (_, i) => [0, 999, 417, 1, 640][i % 5]);
    for (const t of [417, perSample]) {
      const what = `shape [${shape}] t ${t} seed=${seed}`;
      const ts = typeof t === "number" ? Array(N).fill(t) : t;
      const x = leaf(upload(x0, shape));
      const tArg = typeof t === "number" ? t : upload(t, [N]);
      const y = qSample(x, tArg, upload(noise, shape));
      assertClose(await gpu.read(y.value), refQSample(x0, ts, noise), 1e-5, `qSample ${what}`);
      backward(y, upload(dy, shape));
      const fd = finiteDiff((v) => refQSample(v, ts, noise), x0, dy);
      assertClose(await gpu.read(x.grad!), fd, 1e-5, `qSample dx0 ${what}`);
    }
  }
});

Deno.test("reverse step: each sampler's forward vs diffusers in float64, backward vs finite differences", async () => {
  const shape = [2, 1, 3, 5];
  const n = size(shape);
  for (const rule of RULES) {
    for (const [t, tPrev] of [[600, 400], [20, 0], [0, -1]]) {
      // inputs whose predicted x0 keeps clear of the clip bounds, so finite differences are smooth
      let seed = 0, x: F64 = new F64(), eps: F64 = new F64();
      const clear = () =>
        x.length > 0 && clipMargin([refStep(x, eps, new F64(n), t, tPrev, rule).x0raw]) > 1e-3;
      for (let tries = 0; tries < 50 && !clear(); tries++) {
        seed = freshSeed();
        x = randArray(n, seed, -1.2, 1.2);
        eps = randn(n, seed + 1);
      }
      if (!clear()) throw new Error(`no inputs clear of the clip bounds, last seed=${seed}`);
      const z = randn(n, seed + 2), dy = randArray(n, seed + 3);
      const what = `${ruleName(rule)} ${t} -> ${tPrev} seed=${seed}`;
      const c = stepCoefficients(sched, t, tPrev, rule);
      const xv = leaf(upload(x, shape)), ev = leaf(upload(eps, shape));
      const y = reverseStep(xv, ev, c.sigma > 0 ? upload(z, shape) : null, c);
      assertClose(await gpu.read(y.value), refStep(x, eps, z, t, tPrev, rule).out, 1e-5, `forward ${what}`);
      backward(y, upload(dy, shape));
      const fdx = finiteDiff((v) => refStep(v, eps, z, t, tPrev, rule).out, x, dy);
      const fde = finiteDiff((v) => refStep(x, v, z, t, tPrev, rule).out, eps, dy);
      assertClose(await gpu.read(xv.grad!), fdx, 1e-5, `d/dx ${what}`);
      assertClose(await gpu.read(ev.grad!), fde, 1e-5, `d/deps ${what}`);
    }
  }
});

Deno.test("reverseDiffuse: a few steps of each sampler vs float64 with the same noises", async () => {
  for (const shape of [[2, 3, 5, 5], [3, 1, 4, 4]]) {
    for (const ts of [reverseTimesteps(600, 3), reverseTimesteps(30, 3)]) {
      for (const rule of RULES) {
        const seed = freshSeed(), n = size(shape);
        const what = `${ruleName(rule)} [${ts}] shape [${shape}] seed=${seed}`;
        const xT = randArray(n, seed, -1.5, 1.5);
        const set = drawNoiseSet(gpu, shape, ts.length, rngKey(gpu, seed), rule);
        const stochastic = rule.sampler === "ddpm" || rule.eta > 0;
        if (set.reverse.length !== (stochastic ? ts.length : 0)) {
          throw new Error(`${what}: ${set.reverse.length} reverse noises`);
        }
        const noises = stochastic ? set.reverse : null;
        const y = reverseDiffuse(fakeModel, constant(upload(xT, shape)), ts, { ...optionsOf(rule), noises });
        const ref = refReverse(xT, ts, rule, (await readNoiseSet(set)).reverse);
        assertClose(await gpu.read(y.value), ref.out, 1e-5, what);
      }
    }
  }
});

Deno.test("reverseDiffuse: the x0 clip engages (output matches the clipped reference, not the unclipped)", async () => {
  const shape = [2, 3, 4, 4], n = size(shape), ts = reverseTimesteps(600, 3);
  for (const rule of [RULES[1], RULES[2]]) {
    const seed = freshSeed();
    const what = `${ruleName(rule)} seed=${seed}`;
    const xT = randArray(n, seed, -1.5, 1.5);
    const set = drawNoiseSet(gpu, shape, ts.length, rngKey(gpu, seed), rule);
    const y = await gpu.read(
      reverseDiffuse(fakeModel, constant(upload(xT, shape)), ts, { ...optionsOf(rule), noises: set.reverse })
        .value,
    );
    const noises = (await readNoiseSet(set)).reverse;
    const clipped = refReverse(xT, ts, rule, noises), unclipped = refReverse(xT, ts, rule, noises, false);
    if (clippedCount(clipped.x0raws) < n / 4) throw new Error(`${what}: the clip hardly engaged`);
    assertClose(y, clipped.out, 1e-5, `clipped ${what}`);
    const e = relErr(y, unclipped.out);
    if (!(e > 1e-2)) throw new Error(`${what}: output equals the unclipped reference (error ${e})`);
  }
});

Deno.test("noise set: reproducible bit for bit from (seed, stream, counter), different for another counter", async () => {
  const seed = freshSeed() + (freshSeed() & 0xfffff) * 2 ** 32, stream = freshSeed() % 1000;
  const shape = [2, 3, 5, 5], nSteps = 4;
  const bits = async (set: NoiseSet) => {
    const out = [await gpu.readU32(set.forward)];
    for (const t of set.reverse) out.push(await gpu.readU32(t));
    return out;
  };
  const draw = (counter: number) => drawNoiseSet(gpu, shape, nSteps, rngKey(gpu, seed, stream, counter));
  const a = await bits(draw(7)), b = await bits(draw(7)), c = await bits(draw(8));
  const what = `seed=${seed} stream=${stream}`;
  if (a.length !== nSteps + 1) throw new Error(`${what}: ${a.length - 1} reverse draws for ${nSteps} steps`);
  a.forEach((arr, j) => {
    if (arr.some((w, i) => w !== b[j][i])) throw new Error(`${what}: draw ${j} not reproduced bit for bit`);
    const same = arr.filter((w, i) => w === c[j][i]).length;
    if (same > arr.length / 100) throw new Error(`${what}: draw ${j} barely changed with the counter`);
    if (j > 0 && arr.filter((w, i) => w === a[0][i]).length > arr.length / 100) {
      throw new Error(`${what}: reverse draw ${j - 1} repeats the forward draw`);
    }
  });
  const deterministic = drawNoiseSet(gpu, shape, nSteps, rngKey(gpu, seed), { sampler: "ddim", eta: 0 });
  if (deterministic.reverse.length !== 0) throw new Error("DDIM eta 0 must draw no reverse noise");
});

/** x, noise set and dy for the purification gradient tests, with x0 predictions clear of the clip bounds. */
async function purifyCase(shape: number[], tStar: number, steps: number, rule: StepRule) {
  const n = size(shape), ts = reverseTimesteps(tStar, steps);
  const seed = freshSeed();
  const set = drawNoiseSet(gpu, shape, ts.length, rngKey(gpu, seed), rule);
  const noise = await readNoiseSet(set);
  const ref = (x: F64) =>
    refReverse(refQSample(x, Array(shape[0]).fill(tStar), noise.forward), ts, rule, noise.reverse);
  // some x0 predictions clipped (so the gradient goes through the clip), none within 1e-3 of a bound
  const suitable = (x: F64) => {
    const x0raws = ref(x).x0raws;
    return clipMargin(x0raws) > 1e-3 && clippedCount(x0raws) > 0;
  };
  let x: F64 = new F64(), xSeed = 0;
  for (let tries = 0; tries < 50 && !suitable(x); tries++) {
    xSeed = freshSeed();
    x = randArray(n, xSeed, -0.9, 0.9);
  }
  const what = `${ruleName(rule)} seed=${seed} x seed=${xSeed}`;
  if (!suitable(x)) throw new Error(`${what}: found no input with the clip engaged and clear of its bounds`);
  return { n, set, ref, x, dy: randArray(n, xSeed + 1), what };
}

Deno.test("purifyPipeline: gradient w.r.t. the input through 3 steps vs finite differences", async () => {
  const shape = [2, 3, 3, 3], tStar = 90, steps = 3;
  for (const rule of [RULES[1], RULES[3]]) {
    const { set, ref, x, dy, what } = await purifyCase(shape, tStar, steps, rule);
    const xv = leaf(upload(x, shape));
    const y = purifyPipeline(fakeModel, xv, tStar, steps, set, optionsOf(rule));
    assertClose(await gpu.read(y.value), ref(x).out, 1e-5, `forward ${what}`);
    backward(y, upload(dy, shape));
    const fd = finiteDiff((v) => ref(v).out, x, dy);
    assertClose(await gpu.read(xv.grad!), fd, 1e-5, `d/dx ${what}`);
  }
});

Deno.test("purifyPipeline: checkpoint on and off give the identical gradient", async () => {
  const shape = [2, 3, 4, 4], tStar = 90, steps = 3, rule = RULES[0];
  const { set, x, dy, what } = await purifyCase(shape, tStar, steps, rule);
  const run = async (checkpoint: boolean) => {
    const xv = leaf(upload(x, shape));
    const y = purifyPipeline(fakeModel, xv, tStar, steps, set, { ...optionsOf(rule), checkpoint });
    backward(y, upload(dy, shape));
    return [await gpu.readU32(y.value), await gpu.readU32(xv.grad!)];
  };
  const [plain, ckpt] = [await run(false), await run(true)];
  ["output", "gradient"].forEach((name, j) => {
    if (plain[j].some((w, i) => w !== ckpt[j][i])) {
      throw new Error(`${name} differs with checkpoint: ${what}`);
    }
  });
});

Deno.test("generate: diffusers' timesteps, the noise set's randomness, float64 reference, flat memory", async () => {
  const expect = (got: number[], want: number[]) => {
    if (got.join() !== want.join()) throw new Error(`timesteps [${got}], expected [${want}]`);
  };
  expect(generationTimesteps(1000, 4), [750, 500, 250, 0]);
  expect(generationTimesteps(1000, 3), [666, 333, 0]);
  const shape = [2, 1, 3, 3], steps = 4;
  const ts = generationTimesteps(1000, steps);
  for (const rule of [RULES[0], RULES[3]]) {
    const seed = freshSeed(), what = `${ruleName(rule)} seed=${seed}`;
    const key = rngKey(gpu, seed);
    const noise = await readNoiseSet(drawNoiseSet(gpu, shape, ts.length, key, rule));
    const out = generate(fakeModel, shape, steps, key, optionsOf(rule));
    assertClose(await gpu.read(out), refReverse(noise.forward, ts, rule, noise.reverse).out, 1e-5, what);
  }
  // without gradients each step's tensors are released: memory does not grow with the number of steps
  const peak = async (nSteps: number) => {
    await gpu.sync();
    const base = gpu.pool.liveBytes;
    gpu.pool.resetHighWater();
    const out = generate(fakeModel, shape, nSteps, rngKey(gpu, 1), optionsOf(RULES[1]));
    await gpu.sync();
    const kept = gpu.pool.liveBytes - base;
    out.dispose();
    return { kept, peak: gpu.pool.highWater - base };
  };
  // (from 3 steps on, the second step draws noise, as every later one but the last does)
  const few = await peak(3), many = await peak(8);
  // the key tensor (16 B) and the output stay live
  if (few.kept !== many.kept || many.kept !== sizeClass(16) + sizeClass(size(shape) * 4)) {
    throw new Error(`live bytes after generate: ${few.kept} (3 steps), ${many.kept} (8 steps)`);
  }
  if (many.peak > few.peak) throw new Error(`peak memory grows with steps: ${few.peak} -> ${many.peak}`);
});

Deno.test("sampler: misuse is reported", () => {
  const x = constant(gpu.zeros([1, 4]));
  const throwsA = (E: new (...a: never[]) => Error, fn: () => unknown, what: string) => {
    try {
      fn();
    } catch (e) {
      if (e instanceof E) return;
      throw new Error(`${what}: threw ${e}`);
    }
    throw new Error(`${what}: did not throw`);
  };
  throwsA(
    ShapeError,
    () => reverseDiffuse(fakeModel, x, [20, 10, 0], { noises: null }),
    "DDPM without noises",
  );
  throwsA(
    RangeError,
    () => reverseDiffuse(fakeModel, x, [10, 20], { sampler: "ddim" }),
    "increasing timesteps",
  );
  throwsA(RangeError, () => reverseDiffuse(fakeModel, x, [10, 0], { eta: 0.5 }), "eta with DDPM");
  throwsA(RangeError, () => reverseDiffuse(fakeModel, x, [1000, 0], { sampler: "ddim" }), "t = T");
});
