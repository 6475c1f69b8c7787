import { assertClose, f32, freshSeed, randArray, testGpu } from "./util.ts";
import { type ParamInit, ParamStore } from "../src/nn/params.ts";
import {
  AdamW,
  type AdamWOptions,
  Ema,
  type EmaOptions,
  gradNorm,
  optimTuning,
  SgdMomentum,
  type SgdOptions,
} from "../src/ops/optim.ts";

const gpu = await testGpu();

// ---------------------------------------------------------------- float64 references (PyTorch / diffusers)

const norm2 = (g: ArrayLike<number>) => Math.sqrt(Array.from(g).reduce((s, x) => s + x * x, 0));

/** torch.nn.utils.clip_grad_norm_ then the warmup schedule: (clipped grads, lr) at 1-based step t. */
function clipAndLr(
  g: Float64Array,
  t: number,
  o: { lr: number; warmupSteps?: number; maxGradNorm?: number },
) {
  const scale = o.maxGradNorm === undefined ? 1 : Math.min(1, o.maxGradNorm / (norm2(g) + 1e-6));
  const lr = o.warmupSteps ? o.lr * Math.min(1, (t - 1) / o.warmupSteps) : o.lr;
  return { g: g.map((x) => x * scale), lr };
}

function refAdamW(p: Float64Array, grads: Float64Array[], o: AdamWOptions) {
  const [b1, b2] = o.betas ?? [0.9, 0.999], eps = o.eps ?? 1e-8, wd = o.weightDecay ?? 1e-2;
  const m = new Float64Array(p.length), v = new Float64Array(p.length);
  p = Float64Array.from(p);
  grads.forEach((raw, k) => {
    const t = k + 1;
    const { g, lr } = clipAndLr(raw, t, o);
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps;
      p[i] -= (lr / (1 - b1 ** t)) * m[i] / denom;
    }
  });
  return { p, slots: { m, v } };
}

function refSgd(p: Float64Array, grads: Float64Array[], o: SgdOptions) {
  const mu = o.momentum ?? 0.9, damp = o.dampening ?? 0, wd = o.weightDecay ?? 0;
  const buf = new Float64Array(p.length);
  p = Float64Array.from(p);
  grads.forEach((raw, k) => {
    const { g, lr } = clipAndLr(raw, k + 1, o);
    for (let i = 0; i < p.length; i++) {
      let d = g[i] + wd * p[i];
      buf[i] = k === 0 ? d : mu * buf[i] + (1 - damp) * d;
      d = o.nesterov ? d + mu * buf[i] : buf[i];
      p[i] -= lr * d;
    }
  });
  return { p, slots: { momentum: buf } };
}

/** diffusers EMAModel.step with use_ema_warmup, or a constant decay. */
function refEma(ema: Float64Array, models: Float64Array[], o: EmaOptions): Float64Array {
  ema = Float64Array.from(ema);
  models.forEach((p, k) => {
    let d: number;
    if ("decay" in o) d = o.decay;
    else {
      const step = Math.max(0, k + 1 - (o.updateAfterStep ?? 0) - 1);
      d = step <= 0 ? 0 : Math.max(
        o.minDecay ?? 0,
        Math.min(o.maxDecay ?? 0.9999, 1 - (1 + step / (o.invGamma ?? 1)) ** -(o.power ?? 0.75)),
      );
    }
    for (let i = 0; i < ema.length; i++) ema[i] -= (1 - d) * (ema[i] - p[i]);
  });
  return ema;
}

// ---------------------------------------------------------------- helpers

const SHAPES: [string, number[]][] = [["w1", [5, 7]], ["b1", [5]], ["w2", [3, 5, 3, 3]], ["b2", [130]]];

function makeStore(seed: number): ParamStore {
  const specs: ParamInit[] = SHAPES.map(([name, shape], k) => ({
    name,
    shape,
    init: f32(randArray(shape.reduce((a, b) => a * b), seed + k)),
  }));
  return ParamStore.create(gpu, specs);
}

/** Random per-parameter values as a flat float64 array in the store's layout (padding zero). */
function randomFlat(store: ParamStore, seed: number, scale = 1): Float64Array {
  const data = new Map(store.slots.map((s, k) => [s.name, f32(randArray(s.size, seed + k, -scale, scale))]));
  return Float64Array.from(store.join(data));
}

/** Run `steps` optimizer steps on random gradients; compare values, deltas, slots, norm and step count. */
async function checkOptimizer(
  what: string,
  make: (s: ParamStore) => AdamW | SgdMomentum,
  ref: (p: Float64Array, g: Float64Array[]) => { p: Float64Array; slots: Record<string, Float64Array> },
  steps: number,
  gradScale = 1,
) {
  const seed = freshSeed();
  const store = makeStore(seed);
  const opt = make(store);
  const p0 = Float64Array.from(await gpu.read(store.values));
  const grads: Float64Array[] = [];
  for (let k = 0; k < steps; k++) {
    const g = randomFlat(store, seed + 1000 * (k + 1), gradScale);
    grads.push(g);
    gpu.upload(store.grads, f32(g));
    opt.step();
  }
  const want = ref(p0, grads);
  const p = await gpu.read(store.values);
  const tag = `${what} seed=${seed}`;
  assertClose(p, want.p, 1e-6, `params ${tag}`);
  assertClose(p.map((x, i) => x - p0[i]), want.p.map((x, i) => x - p0[i]), 1e-4, `param deltas ${tag}`);
  const state = await opt.saveState();
  for (const [name, r] of Object.entries(want.slots)) {
    assertClose(state.slots[name], r, 1e-5, `slot ${name} ${tag}`);
  }
  if (state.step !== steps) throw new Error(`step count ${state.step}, want ${steps} (${tag})`);
  assertClose([await opt.readGradNorm()], [norm2(grads[steps - 1])], 1e-5, `last grad norm ${tag}`);
  // padding must stay exactly zero
  const used = new Uint8Array(store.total);
  for (const s of store.slots) used.fill(1, s.offset, s.offset + s.size);
  p.forEach((x, i) => {
    if (!used[i] && x !== 0) throw new Error(`padding ${i} became ${x} (${tag})`);
  });
  opt.dispose();
  store.dispose();
}

// ---------------------------------------------------------------- tests

Deno.test("gradNorm: global L2 norm matches float64 (sizes up to 1M floats)", async () => {
  for (const n of [64, 64 * 1001, (1 << 20) + 320]) {
    const seed = freshSeed();
    const x = randArray(n, seed);
    const out = await gpu.read(gradNorm(gpu, gpu.tensor(f32(x))));
    assertClose(out, [norm2(x)], 1e-5, `norm n=${n} seed=${seed}`);
  }
});

const ADAMW_CASES: [string, AdamWOptions, number][] = [
  ["AdamW plain", { lr: 1e-2, weightDecay: 0 }, 1],
  ["AdamW warmup + wd, clip inactive", { lr: 2e-2, warmupSteps: 3, weightDecay: 0.05, maxGradNorm: 1e6 }, 1],
  ["AdamW clip active, betas", { lr: 1e-2, betas: [0.8, 0.99], eps: 1e-6, maxGradNorm: 0.5 }, 1],
  ["AdamW tiny gradients (eps matters)", { lr: 1e-3, eps: 1e-5 }, 1e-5],
];
for (const [what, o, scale] of ADAMW_CASES) {
  Deno.test(`${what}: 6 steps match PyTorch's algorithm in float64`, async () => {
    await checkOptimizer(what, (s) => new AdamW(s, o), (p, g) => refAdamW(p, g, o), 6, scale);
  });
}

const SGD_CASES: [string, SgdOptions][] = [
  ["SGD momentum", { lr: 0.05, momentum: 0.9 }],
  ["SGD warmup + wd + dampening, clip active", {
    lr: 0.1,
    warmupSteps: 2,
    weightDecay: 1e-2,
    dampening: 0.2,
    maxGradNorm: 0.3,
  }],
  ["SGD nesterov, clip inactive", { lr: 0.05, momentum: 0.8, nesterov: true, maxGradNorm: 1e6 }],
];
for (const [what, o] of SGD_CASES) {
  Deno.test(`${what}: 6 steps match PyTorch's algorithm in float64`, async () => {
    await checkOptimizer(what, (s) => new SgdMomentum(s, o), (p, g) => refSgd(p, g, o), 6);
  });
}

Deno.test("AdamW and SGD: chunked binding (forced 128-float chunks) gives the same result", async () => {
  optimTuning.maxChunkFloats = 128;
  try {
    const o: AdamWOptions = { lr: 1e-2, warmupSteps: 2, maxGradNorm: 0.5 };
    await checkOptimizer("AdamW chunked", (s) => new AdamW(s, o), (p, g) => refAdamW(p, g, o), 4);
    const so: SgdOptions = { lr: 0.05, maxGradNorm: 0.5 };
    await checkOptimizer("SGD chunked", (s) => new SgdMomentum(s, so), (p, g) => refSgd(p, g, so), 4);
  } finally {
    optimTuning.maxChunkFloats = null;
  }
});

Deno.test("AdamW: saved state resumes to the same trajectory", async () => {
  const seed = freshSeed();
  const o: AdamWOptions = { lr: 1e-2, warmupSteps: 4, maxGradNorm: 0.5 };
  const a = makeStore(seed);
  const optA = new AdamW(a, o);
  const grads = [0, 1, 2, 3, 4].map((k) => f32(randomFlat(a, seed + 100 * (k + 1))));
  for (const g of grads.slice(0, 3)) {
    gpu.upload(a.grads, g);
    optA.step();
  }
  const saved = await optA.saveState();
  const b = ParamStore.fromHost(gpu, a.slots, await a.toHost());
  const optB = new AdamW(b, o);
  optB.loadState(saved);
  for (const g of grads.slice(3)) {
    for (const [s, opt] of [[a, optA], [b, optB]] as const) {
      gpu.upload(s.grads, g);
      opt.step();
    }
  }
  assertClose(await gpu.read(b.values), await gpu.read(a.values), 1e-7, `resumed params seed=${seed}`);
  if ((await optB.readStep()) !== 5) throw new Error("resumed step count");
  for (const x of [optA, optB, a, b]) x.dispose();
});

const EMA_CASES: [string, EmaOptions][] = [
  ["EMA diffusers warmup defaults", {}],
  ["EMA warmup, updateAfterStep 2, maxDecay 0.6, minDecay 0.3", {
    updateAfterStep: 2,
    maxDecay: 0.6,
    minDecay: 0.3,
  }],
  ["EMA constant decay", { decay: 0.9 }],
];
for (const [what, o] of EMA_CASES) {
  Deno.test(`${what}: 6 updates match float64`, async () => {
    const seed = freshSeed();
    const model = makeStore(seed);
    const ema = ParamStore.fromHost(gpu, model.slots, model.split(f32(randomFlat(model, seed + 7))));
    const e0 = Float64Array.from(await gpu.read(ema.values));
    const ev = new Ema(ema, model, o);
    const models: Float64Array[] = [];
    for (let k = 0; k < 6; k++) {
      const p = randomFlat(model, seed + 100 * (k + 1));
      models.push(p);
      gpu.upload(model.values, f32(p));
      ev.step();
    }
    assertClose(await gpu.read(ema.values), refEma(e0, models, o), 1e-6, `${what} seed=${seed}`);
    if ((await ev.readStep()) !== 6) throw new Error("EMA step count");
    for (const x of [ev, ema, model]) x.dispose();
  });
}

Deno.test("optimizer and EMA steps: a fixed handful of dispatches, no new pipeline, no readback", async () => {
  const seed = freshSeed();
  const store = makeStore(seed);
  const ema = store.clone();
  const opts: [string, AdamW | SgdMomentum][] = [
    ["AdamW", new AdamW(store, { lr: 1e-3, warmupSteps: 10, maxGradNorm: 1 })],
    ["SGD", new SgdMomentum(store, { lr: 1e-3, maxGradNorm: 1 })],
  ];
  const ev = new Ema(ema, store);
  const poison = gpu.poison;
  gpu.poison = false; // poisoning adds a fill per temporary
  try {
    for (const [name, opt] of opts) {
      opt.step();
      ev.step();
      const before = { ...gpu.stats };
      for (let k = 0; k < 5; k++) {
        opt.step();
        ev.step();
      }
      const d = (key: keyof typeof before) => gpu.stats[key] - before[key];
      // per step: norm partials, norm final (+ step count), update; EMA: update, counter
      if (d("dispatches") !== 5 * (3 + 2)) {
        throw new Error(`${name}: ${d("dispatches")} dispatches for 5 steps`);
      }
      if (d("pipelines") !== 0 || d("readbacks") !== 0) {
        throw new Error(`${name}: new pipelines or readbacks`);
      }
      if ((await opt.readStep()) !== 6) throw new Error(`${name}: step count`);
    }
    if ((await ev.readStep()) !== 12) throw new Error("EMA step count");
  } finally {
    gpu.poison = poison;
  }
  for (const [, opt] of opts) opt.dispose();
  for (const x of [ev, ema, store]) x.dispose();
});
