/**
 * ADDT: RBGM (ranks with ties, a standard normal sample by Kolmogorov-Smirnov, fresh per draw), the mixing
 * coefficients and formulas against float64, the gradient with respect to eps_d against central
 * differences of a float64 reference of the whole path (UNet with its dropout masks, classifier,
 * cross-entropy), CGPO raising the classifier loss, and the training step (loss goes down on a fixed batch,
 * no readback, one upload, no allocation growth; every ablation runs).
 */
import {
  assertClose,
  checkSteadySteps,
  f32,
  finiteDiff,
  freshSeed,
  randArray,
  randn,
  rng,
  testGpu,
} from "./util.ts";
import {
  type Arr,
  CpuOps,
  finiteDiffAt,
  hostParams,
  someCoords,
  timestepEmbeddingRef,
} from "./nn_reference.ts";
import { scope, scopeAsync, type Tensor } from "../src/tensor.ts";
import { neg } from "../src/ops/elementwise.ts";
import { backward, constant, leaf, noGrad } from "../src/autodiff/var.ts";
import { keyWords, normal, rngKey } from "../src/ops/random.ts";
import { initParams } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/params.ts";
import { TINY_UNET, type UNetConfig, unetForward, unetParamDecls, unetWalk } from "../src/nn/unet.ts";
import { type CnnConfig, cnnParamDecls, cnnWalk } from "../src/nn/classifier.ts";
import { frozenClassifier } from "../src/defense/networks.ts";
import { DEFAULT_SCHEDULE } from "../src/diffusion/schedule.ts";
import { qSampleRaw } from "../src/diffusion/qsample.ts";
import { type Dataset, makeDataset } from "../src/data/dataset.ts";
import { rbgm } from "../src/addt/rbgm.ts";
import {
  addtLambda,
  COEF_COLS,
  linfRatio,
  mixCoefficients,
  mixNoise,
  type MixSpec,
  mixTable,
  noisedInput,
  x0HatUnit,
} from "../src/addt/lambda.ts";
import { type Guidance, guidanceLoss, type Objective } from "../src/addt/objective.ts";
import { cgpo } from "../src/addt/cgpo.ts";
import { linfPerturbation } from "../src/addt/linf.ts";
import { passSites, SITE_DROPOUT, SITE_NOISE, SITE_TIMESTEPS } from "../src/addt/draws.ts";
import { drawTimesteps } from "../src/train/draws.ts";
import {
  createFinetuneRun,
  disposeFinetuneRun,
  dropoutSites,
  type FinetuneRun,
  recordFinetuneStep,
  seekFinetuneRun,
} from "../src/addt/finetune.ts";
import { finetuneDefaults, type FinetuneMethod } from "../src/addt/settings.ts";

const gpu = await testGpu();
const sched = DEFAULT_SCHEDULE;
type F64 = Float64Array;

// ---------------------------------------------------------------- tiny models

/** A UNet for 1x8x8 images: two levels, attention, dropout (every block kind of the real model). */
const UCFG: UNetConfig = {
  ...TINY_UNET,
  sample_size: 8,
  in_channels: 1,
  out_channels: 1,
  block_out_channels: [8, 8],
};
const CCFG: CnnConfig = {
  image_size: 8,
  in_channels: 1,
  channels: [4, 4, 8],
  hidden: 8,
  classes: 10,
  norm_groups: 0,
};
const CMODEL = { arch: "cnn" as const, config: CCFG };
const [C, S] = [1, 8];

function tinyNets(seed: number) {
  const uInit = initParams(unetParamDecls(UCFG), seed), cInit = initParams(cnnParamDecls(CCFG), seed + 1);
  const unet = ParamStore.create(gpu, uInit), cls = ParamStore.create(gpu, cInit);
  return {
    unet,
    cls,
    uHost: hostParams(uInit),
    cHost: hostParams(cInit),
    classify: frozenClassifier(cls, CMODEL),
    dispose: () => [unet, cls].forEach((s) => s.dispose()),
  };
}

/** n random 8-bit images with labels (c x h x w). */
function synthetic(n: number, c: number, h: number, w: number, seed: number): Dataset {
  return makeDataset({
    name: "synthetic",
    images: Uint8Array.from(randArray(n * c * h * w, seed, 0, 256), Math.floor),
    labels: Uint8Array.from(randArray(n, seed + 1, 0, 10), Math.floor),
    n,
    c,
    h,
    w,
    classes: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
  });
}

const LAMBDA: MixSpec = { kind: "lambda", lambdaUnit: 0.03, lambdaMax: 0.3 };

// ---------------------------------------------------------------- statistics

/** The standard normal CDF (erfc by Numerical Recipes' Chebyshev fit, |error| < 1.2e-7). */
function phi(x: number): number {
  const z = Math.abs(x) / Math.SQRT2, t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(
    -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
                      t *
                        (0.27886807 +
                          t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return x >= 0 ? 1 - erfc / 2 : erfc / 2;
}

/** Kolmogorov-Smirnov distance of a sample from N(0, 1). */
function ksNormal(values: ArrayLike<number>): number {
  const v = Float64Array.from(values).sort();
  let d = 0;
  v.forEach((x, i) => {
    const f = phi(x);
    d = Math.max(d, Math.abs(f - i / v.length), Math.abs((i + 1) / v.length - f));
  });
  return d;
}

/** Stable ranks of a row: position of each element in the order by value, ties by index. */
function stableRank(row: ArrayLike<number>): number[] {
  const idx = Array.from({ length: row.length }, (_, i) => i).sort((a, b) => row[a] - row[b] || a - b);
  const r = new Array<number>(row.length);
  idx.forEach((i, p) => (r[i] = p));
  return r;
}

// ---------------------------------------------------------------- RBGM

Deno.test("rbgm: each row takes the input's ranks (ties by position) over a sorted N(0,1) sample", async () => {
  const seed = freshSeed();
  const [n, c, h, w] = [3, 2, 7, 9]; // rows of 63, padded to 64 inside the sort
  const L = h * w;
  // quarter steps in [-1, 1]: nine values over 63 places, so every row has many ties
  const acc = randArray(n * c * L, seed).map((v) => Math.round(v * 4) / 4);
  const key = rngKey(gpu, seed, 7, seed % 1000);
  const accT = gpu.tensor(f32(acc), [n, c, h, w]);
  const [out, z, again, other] = await scopeAsync(() =>
    Promise.all([
      gpu.read(rbgm(gpu, accT, key, 5)),
      gpu.read(normal(gpu, [n * c, L], key, 5)),
      gpu.read(rbgm(gpu, accT, key, 5)),
      gpu.read(rbgm(gpu, accT, key, 6)),
    ])
  );
  for (let r = 0; r < n * c; r++) {
    const row = acc.subarray(r * L, (r + 1) * L);
    const sorted = Float32Array.from(z.subarray(r * L, (r + 1) * L)).sort();
    const ranks = stableRank(row);
    for (let i = 0; i < L; i++) {
      if (out[r * L + i] !== sorted[ranks[i]]) {
        throw new Error(`row ${r} position ${i}: ${out[r * L + i]}, want ${sorted[ranks[i]]} (seed=${seed})`);
      }
    }
  }
  if (again.some((v, i) => v !== out[i])) {
    throw new Error(`the same key and site drew differently (seed=${seed})`);
  }
  const same = other.filter((v, i) => v === out[i]).length;
  if (same > out.length / 10) {
    throw new Error(`another site is not a fresh sample: ${same} equal (seed=${seed})`);
  }
  accT.dispose();
  key.dispose();
});

Deno.test("rbgm: outputs are a standard normal sample (Kolmogorov-Smirnov over many rows)", async () => {
  const seed = freshSeed();
  const shape = [8, 4, 16, 16], size = 8 * 4 * 256;
  const acc = randArray(size, seed, 0, 1); // uniform input: only its order may survive
  const key = rngKey(gpu, seed, 9, 0);
  const accT = gpu.tensor(f32(acc), shape);
  const out = await scopeAsync(() => gpu.read(rbgm(gpu, accT, key, 3)));
  // 1.95 / sqrt(n) is the 0.1% critical value; the uniform input itself is far outside it
  const bound = 1.95 / Math.sqrt(size);
  const d = ksNormal(out), dIn = ksNormal(acc);
  if (!(d < bound)) throw new Error(`KS distance ${d.toFixed(5)} >= ${bound.toFixed(5)} (seed=${seed})`);
  if (!(dIn > 10 * bound)) throw new Error(`KS cannot tell a uniform sample apart: ${dIn} (seed=${seed})`);
  // per row too: the mean of the rows' distances is that of 256-draw normal samples (about 0.054)
  const perRow = Array.from({ length: 32 }, (_, r) => ksNormal(out.subarray(r * 256, (r + 1) * 256)));
  const mean = perRow.reduce((a, b) => a + b, 0) / perRow.length;
  if (!(mean < 0.08)) throw new Error(`mean per-row KS distance ${mean} (seed=${seed})`);
  accT.dispose();
  key.dispose();
});

// ---------------------------------------------------------------- lambda and the mixing formulas

/** The coefficients of one timestep in float64, written out independently of lambda.ts. */
function coefRef(t: number, spec: MixSpec): number[] {
  const a = sched.alphaBar[t], sa = Math.sqrt(a), sb = Math.sqrt(1 - a);
  if (spec.kind === "plain") return [sa, sb, 1, 0];
  if (spec.kind === "linf") return [sa, sb, 1, Math.min(10, sa / sb)];
  const lambda = Math.min(spec.lambdaMax, Math.max(0, spec.lambdaUnit * sa / sb));
  return [sa, sb, Math.sqrt(1 - lambda * lambda), lambda];
}

Deno.test("lambda_t, the noise mix, x_t and x0_hat against float64, with their gradients", async () => {
  const seed = freshSeed(), r = rng(seed);
  const specs: MixSpec[] = [LAMBDA, { kind: "lambda", lambdaUnit: 0.05, lambdaMax: 0.2 }, {
    kind: "linf",
    lambdaUnit: 0,
    lambdaMax: 0,
  }, {
    kind: "plain",
    lambdaUnit: 0,
    lambdaMax: 0,
  }];
  // the known ends: lambda_max at t = 0, lambda_unit sqrt(abar)/sqrt(1 - abar) (tiny) at t = T - 1
  if (addtLambda(sched.alphaBar[0], 0.03, 0.3) !== 0.3) throw new Error("lambda at t = 0");
  const last = sched.alphaBar[999];
  assertClose([addtLambda(last, 0.03, 0.3)], [0.03 * Math.sqrt(last / (1 - last))], 1e-12, "lambda at T - 1");
  if (linfRatio(sched.alphaBar[0]) !== 10) throw new Error("linf ratio clip");
  for (const shape of [[7, 1, 3, 3], [5, 2, 4, 6]]) {
    const n = shape[0], size = shape.reduce((a, b) => a * b, 1), per = size / n;
    const ts = [0, 999, ...Array.from({ length: n - 2 }, () => Math.floor(r() * 1000))];
    const x0 = randArray(size, seed + 1), eps = randn(size, seed + 2), d = randn(size, seed + 3);
    const pred = randn(size, seed + 4), g = randArray(size, seed + 5);
    for (const spec of specs) {
      const what = `${spec.kind} ${spec.lambdaUnit}/${spec.lambdaMax} [${shape}] seed=${seed}`;
      const ref = ts.flatMap((t) => coefRef(t, spec));
      const coef = (i: number, c: number) => ref[Math.floor(i / per) * COEF_COLS + c];
      const targetRef = (dd: ArrayLike<number>) =>
        Float64Array.from(eps, (e, i) => coef(i, 2) * e + coef(i, 3) * dd[i]);
      const xtRef = (dd: ArrayLike<number>) => {
        const tg = targetRef(dd);
        return Float64Array.from(x0, (x, i) => coef(i, 0) * x + coef(i, 1) * tg[i]);
      };
      const hatRef = (xt: ArrayLike<number>, p: ArrayLike<number>) =>
        Float64Array.from(xt, (x, i) => ((x - coef(i, 1) * p[i]) / coef(i, 0) + 1) / 2);
      const xtHost = xtRef(d);
      await scopeAsync(async () => {
        const tT = gpu.tensor(f32(ts)), x0T = gpu.tensor(f32(x0), shape), epsT = gpu.tensor(f32(eps), shape);
        const coefs = mixCoefficients(gpu, sched, spec, tT);
        assertClose(await gpu.read(coefs), ref, 1e-7, `coefficients ${what}`);
        const dv = leaf(gpu.tensor(f32(d), shape));
        assertClose(
          await gpu.read(mixNoise(gpu, epsT, dv.value, coefs)),
          targetRef(d),
          1e-6,
          `target ${what}`,
        );
        const xt = noisedInput(gpu, x0T, epsT, dv, coefs);
        assertClose(await gpu.read(xt.value), xtHost, 1e-6, `x_t ${what}`);
        // the final step noises with qSample: the same x_t from the target
        const viaQ = qSampleRaw(gpu, x0T, tT, mixNoise(gpu, epsT, dv.value, coefs), sched);
        assertClose(await gpu.read(viaQ), xtHost, 1e-6, `qSample of the target ${what}`);
        if (spec.kind !== "plain") {
          backward(xt, gpu.tensor(f32(g), shape));
          assertClose(await gpu.read(dv.grad!), finiteDiff(xtRef, d, g), 1e-5, `d x_t / d d ${what}`);
          dv.zeroGrad();
        }
        const xtv = leaf(gpu.tensor(f32(xtHost), shape)), pv = leaf(gpu.tensor(f32(pred), shape));
        const hat = x0HatUnit(xtv, pv, coefs);
        assertClose(await gpu.read(hat.value), hatRef(xtHost, pred), 1e-5, `x0_hat ${what}`);
        backward(hat, gpu.tensor(f32(g), shape));
        const xtF = Float64Array.from(xtHost);
        assertClose(
          await gpu.read(xtv.grad!),
          finiteDiff((x) => hatRef(x, pred), xtF, g),
          1e-5,
          `d x0_hat / d x_t ${what}`,
        );
        assertClose(
          await gpu.read(pv.grad!),
          finiteDiff((p) => hatRef(xtF, p), pred, g),
          1e-5,
          `d x0_hat / d pred ${what}`,
        );
        [dv, xtv, pv].forEach((v) => v.zeroGrad());
      });
    }
  }
  // the table on the host is the same float64 values rounded to float32
  const host = mixTable(sched, LAMBDA);
  assertClose(host, Array.from({ length: 1000 }, (_, t) => coefRef(t, LAMBDA)).flat(), 1e-7, "mixTable");
});

// ---------------------------------------------------------------- d L / d eps_d against float64

function ceMean(z: ArrayLike<number>, labels: ArrayLike<number>, k: number): number {
  let total = 0;
  for (let n = 0; n < labels.length; n++) {
    let m = -Infinity;
    for (let i = 0; i < k; i++) m = Math.max(m, z[n * k + i]);
    let s = 0;
    for (let i = 0; i < k; i++) s += Math.exp(z[n * k + i] - m);
    total += m + Math.log(s) - z[n * k + labels[n]];
  }
  return total / labels.length;
}

/** The objective in float64: x_t, the UNet (with the GPU's dropout masks), then the classifier's CE of
 * ((x_t - sb eps_theta) / sa + 1) / 2, or the MSE of eps_theta against eps. Coefficients are the f32 table
 * values the GPU uses. */
function objectiveRef(
  nets: ReturnType<typeof tinyNets>,
  objective: Objective,
  x0: F64,
  eps: F64,
  d: F64,
  ts: number[],
  labels: Uint32Array,
  key: Uint32Array,
  site: number,
  dropout: boolean,
): number {
  const n = ts.length, per = x0.length / n, table = mixTable(sched, LAMBDA);
  const c = (i: number, col: number) => table[ts[Math.floor(i / per)] * COEF_COLS + col];
  const xt = Float64Array.from(x0, (x, i) => c(i, 0) * x + c(i, 1) * (c(i, 2) * eps[i] + c(i, 3) * d[i]));
  const c0 = UCFG.block_out_channels[0];
  const tSin: Arr = {
    shape: [n, c0],
    data: timestepEmbeddingRef(ts, c0, UCFG.flip_sin_to_cos, UCFG.freq_shift),
  };
  const ops = new CpuOps(nets.uHost, { train: dropout, keyWords: key, siteBase: site });
  const pred = unetWalk(ops, UCFG, { shape: [n, C, S, S], data: xt }, tSin).data;
  if (objective === "mse") return pred.reduce((a, p, i) => a + (p - eps[i]) ** 2, 0) / pred.length;
  const u = Float64Array.from(xt, (x, i) => ((x - c(i, 1) * pred[i]) / c(i, 0)) * 0.5 + 0.5);
  const logits = cnnWalk(new CpuOps(nets.cHost, {}), CCFG, { shape: [n, C, S, S], data: u });
  return ceMean(logits.data, labels, CCFG.classes);
}

Deno.test("guidance loss: value and d / d eps_d match central differences of the float64 path", async () => {
  for (const [objective, dropout] of [["classifier", true], ["mse", true], ["classifier", false]] as const) {
    const seed = freshSeed(), r = rng(seed);
    const nets = tinyNets(seed);
    const n = 2, size = n * C * S * S, shape = [n, C, S, S];
    const ts = [3 + Math.floor(r() * 20), 40 + Math.floor(r() * 200)]; // lambda_max and lambda_unit regimes
    const x0 = randArray(size, seed + 1), eps = randn(size, seed + 2), d = randn(size, seed + 3);
    const labels = Uint32Array.from({ length: n }, (_, i) => (seed + 3 * i) % 10);
    const words = keyWords(seed, 11, seed % 977), site = passSites(2).dropout;
    const what = `${objective} dropout=${dropout} t=${ts} seed=${seed}`;
    await scopeAsync(async () => {
      const tT = gpu.tensor(f32(ts)), key = gpu.tensor(words);
      const g: Guidance = {
        gpu,
        model: nets.unet,
        config: UCFG,
        x0: gpu.tensor(f32(x0), shape),
        labels: gpu.tensor(labels),
        t: tT,
        coefs: mixCoefficients(gpu, sched, LAMBDA, tT),
        key,
        objective,
        classifier: nets.classify,
        dropout,
      };
      const dv = leaf(gpu.tensor(f32(d), shape));
      const loss = guidanceLoss(g, dv, gpu.tensor(f32(eps), shape), site);
      const ref = () => [objectiveRef(nets, objective, x0, eps, d, ts, labels, words, site, dropout)];
      assertClose(await gpu.read(loss.value), ref(), 1e-5, `loss ${what}`);
      backward(loss);
      const grad = await gpu.read(dv.grad!);
      // the weights are frozen: no parameter gradient is computed
      if ((await gpu.read(nets.unet.grads)).some((v) => v !== 0)) {
        throw new Error(`UNet weight gradients ${what}`);
      }
      const coords = someCoords(size, 12, r);
      assertClose(
        coords.map((i) => grad[i]),
        finiteDiffAt(ref, d, coords, [1], 1e-6),
        1e-3,
        `d / d eps_d ${what}`,
      );
      dv.zeroGrad();
    });
    nets.dispose();
  }
});

// ---------------------------------------------------------------- CGPO does its job

Deno.test("cgpo: the classifier loss at the final eps_d beats a fresh Gaussian eps_d, averaged over seeds", async () => {
  const seed = freshSeed(), r = rng(seed);
  const nets = tinyNets(seed);
  const n = 4, shape = [n, C, S, S], size = n * C * S * S;
  const gains: number[] = [], drops: number[] = [];
  await scopeAsync(async () => {
    const x0 = gpu.tensor(f32(randArray(size, seed + 1)), shape);
    const labels = gpu.tensor(Uint32Array.from({ length: n }, () => Math.floor(r() * 10)));
    for (let rep = 0; rep < 4; rep++) {
      const [lc, lr, ln] = await scopeAsync(async () => {
        const tT = gpu.tensor(f32(Array.from({ length: n }, () => 20 + Math.floor(r() * 400))));
        const key = gpu.tensor(keyWords(seed, 21, rep));
        const g: Guidance = {
          gpu,
          model: nets.unet,
          config: UCFG,
          x0,
          labels,
          t: tT,
          coefs: mixCoefficients(gpu, sched, LAMBDA, tT),
          key,
          objective: "classifier",
          classifier: nets.classify,
          dropout: true,
        };
        const epsD = cgpo(g, 5);
        // judged with one held-out noise draw, no dropout: only eps_d differs between the three
        const judge = { ...g, key: gpu.tensor(keyWords(seed, 22, rep)), dropout: false };
        const noise = normal(gpu, shape, judge.key, 0);
        const at = (d: Tensor) => noGrad(() => guidanceLoss(judge, constant(d), noise, 16)).value;
        const fresh = normal(gpu, shape, judge.key, 1);
        return await Promise.all([gpu.read(at(epsD)), gpu.read(at(fresh)), gpu.read(at(neg(gpu, epsD)))]);
      });
      gains.push(lc[0] - lr[0]);
      drops.push(lr[0] - ln[0]);
    }
  });
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const what = `gains ${gains.map((v) => v.toExponential(2))} drops ${
    drops.map((v) => v.toExponential(2))
  } seed=${seed}`;
  if (!(mean(gains) > 0)) throw new Error(`CGPO did not raise the loss on average: ${what}`);
  // the reversed ordering (-eps_d, also an exact Gaussian sample) must lower it: the test can tell
  if (!(mean(drops) > 0)) throw new Error(`the reversed eps_d did not lower the loss: ${what}`);
  nets.dispose();
});

// ---------------------------------------------------------------- ADDT_linf

Deno.test("linf: PGD delta stays in the budget and the image box, moves by sign steps", async () => {
  const seed = freshSeed();
  const nets = tinyNets(seed);
  const n = 4, shape = [n, C, S, S], size = n * C * S * S;
  const x0 = randArray(size, seed + 1, -1, 1).map((v) => (v > 0.8 ? 1 : v)); // some pixels at the bound
  const [eps, alpha] = [0.6, 0.3];
  const [one, five] = await scopeAsync(async () => {
    const tT = gpu.tensor(f32([10, 200, 700, 999]));
    const g: Guidance = {
      gpu,
      model: nets.unet,
      config: UCFG,
      x0: gpu.tensor(f32(x0), shape),
      labels: gpu.tensor(Uint32Array.of(1, 2, 3, 4)),
      t: tT,
      coefs: mixCoefficients(gpu, sched, { kind: "linf", lambdaUnit: 0, lambdaMax: 0 }, tT),
      key: gpu.tensor(keyWords(seed, 31, 0)),
      objective: "classifier",
      classifier: nets.classify,
      dropout: true,
    };
    return await Promise.all([
      gpu.read(linfPerturbation(g, 1, eps, alpha)),
      gpu.read(linfPerturbation(g, 5, eps, alpha)),
    ]);
  });
  const tol = 1e-6;
  for (const [i, v] of one.entries()) {
    const box = Math.abs(v - (1 - x0[i])) < tol || Math.abs(v - (-1 - x0[i])) < tol;
    const ok = Math.abs(v) < tol || Math.abs(Math.abs(v) - alpha) < tol || box;
    if (!ok) throw new Error(`one step: delta[${i}] = ${v} is not 0, +-alpha or the box (seed=${seed})`);
  }
  if (one.every((v) => v === 0)) throw new Error(`delta did not move (seed=${seed})`);
  for (const [i, v] of five.entries()) {
    if (Math.abs(v) > eps + tol || x0[i] + v > 1 + tol || x0[i] + v < -1 - tol) {
      throw new Error(`delta[${i}] = ${v} outside the budget or the box (x0 ${x0[i]}, seed=${seed})`);
    }
  }
  nets.dispose();
});

// ---------------------------------------------------------------- the training step

function tinyRun(method: FinetuneMethod, seed: number, nets: ReturnType<typeof tinyNets>, overrides = {}) {
  const settings = finetuneDefaults("unused", {
    batchSize: 4,
    seed,
    method,
    cgpoSteps: 2,
    classifier: "unused",
    linfEps: 0.1,
    ...overrides,
  });
  const run = createFinetuneRun(gpu, settings, UCFG, synthetic(12, C, S, S, seed), nets.classify);
  run.model.copyFrom(nets.unet);
  run.ema.copyFrom(nets.unet);
  return run;
}

Deno.test("finetune step: no readback, one upload, no new buffers in steady state, the key advances", async () => {
  const seed = freshSeed();
  const nets = tinyNets(seed);
  const run = tinyRun("addt", seed, nets, { warmup: 1 });
  seekFinetuneRun(run, 0);
  try {
    checkSteadySteps(
      gpu,
      4,
      (step) => scope(() => recordFinetuneStep(run, run.batcher.atStep(step))),
      "fine-tuning",
    );
    const stats = await run.stats.read();
    if (!(Number.isFinite(stats.meanLoss) && stats.meanLoss > 0)) throw new Error(JSON.stringify(stats));
    const key = await gpu.readU32(run.key);
    if (key[3] !== 4) throw new Error(`key counter ${key[3]} after 4 steps`);
  } finally {
    disposeFinetuneRun(run);
    nets.dispose();
  }
});

/** Train `steps` times on one batch with the same draws; the loss of each step. */
async function fixedBatchLosses(run: FinetuneRun, steps: number): Promise<number[]> {
  const batch = run.batcher.atStep(0), losses: number[] = [];
  for (let k = 0; k < steps; k++) {
    seekFinetuneRun(run, 0);
    scope(() => recordFinetuneStep(run, batch));
    losses.push((await run.stats.read()).meanLoss);
  }
  return losses;
}

Deno.test("finetune step: a few ADDT steps lower the training loss on a fixed batch", async () => {
  const seed = freshSeed();
  const nets = tinyNets(seed);
  const run = tinyRun("addt", seed, nets, { lr: 2e-3, warmup: 0 });
  try {
    const losses = await fixedBatchLosses(run, 8);
    const first = losses[0], lastTwo = Math.max(losses[6], losses[7]);
    if (!(lastTwo < 0.9 * first)) throw new Error(`losses ${losses.map((l) => l.toFixed(4))} (seed=${seed})`);
  } finally {
    disposeFinetuneRun(run);
    nets.dispose();
  }
});

Deno.test("finetune step: every ablation runs a finite step; clean is the plain DDPM loss", async () => {
  const seed = freshSeed();
  const nets = tinyNets(seed);
  for (const method of ["clean", "mse", "linf"] as const) {
    const run = tinyRun(method, seed, nets, { classifier: method === "mse" ? null : "unused" });
    try {
      seekFinetuneRun(run, 3);
      const batch = run.batcher.atStep(3);
      // clean fine-tuning is plain DDPM: the epsilon MSE of the UNet on the step's own draws
      const plain = method !== "clean" ? null : await scopeAsync(async () => {
        run.inputs.upload(batch);
        const t = drawTimesteps(gpu, 4, 1000, run.key, SITE_TIMESTEPS);
        const noise = normal(gpu, [4, C, S, S], run.key, SITE_NOISE);
        const xt = qSampleRaw(gpu, run.inputs.images, t, noise, sched);
        const opts = { train: true, rngKey: run.key, siteBase: SITE_DROPOUT };
        const pred = noGrad(() => unetForward(run.model, run.config, constant(xt), t, opts)).value;
        const [p, z] = [await gpu.read(pred), await gpu.read(noise)];
        return p.reduce((a, v, i) => a + (v - z[i]) ** 2, 0) / p.length;
      });
      scope(() => recordFinetuneStep(run, batch));
      const stats = await run.stats.read();
      if (plain !== null) assertClose([stats.meanLoss], [plain], 1e-5, `clean loss seed=${seed}`);
      if (!(Number.isFinite(stats.meanLoss) && stats.meanLoss > 0 && Number.isFinite(stats.meanGradNorm))) {
        throw new Error(`${method}: ${JSON.stringify(stats)} (seed=${seed})`);
      }
    } finally {
      disposeFinetuneRun(run);
    }
  }
  // one dropout per resnet, and every resnet has a norm2
  const resnets = unetParamDecls(UCFG).filter((d) => d.name.endsWith(".norm2.weight")).length;
  if (dropoutSites(UCFG) !== resnets) {
    throw new Error(`dropout sites ${dropoutSites(UCFG)} for ${resnets} resnets`);
  }
  nets.dispose();
});
