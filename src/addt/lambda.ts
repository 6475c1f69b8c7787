/**
 * How ADDT mixes its guided noise into the forward process, per sample:
 *
 *   target = cEps * eps + cD * d,   x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) target
 *
 * - ADDT (and the MSE-guided ablation): d = eps_d, cD = lambda_t = clamp(lambda_unit sqrt(abar_t) /
 *   sqrt(1 - abar_t), 0, lambda_max) and cEps = sqrt(1 - lambda_t^2), so the total variance stays 1;
 * - ADDT_linf: d = delta (a pixel-space perturbation in [-1, 1] units), cEps = 1 and
 *   cD = clip(sqrt(abar_t) / sqrt(1 - abar_t), 0, 10), so sqrt(1 - abar_t) cD delta = sqrt(abar_t) delta
 *   away from the clip: delta perturbs x0 itself (the authors' train_ADDT_linf.py);
 * - clean fine-tuning: cEps = 1, cD = 0 (plain DDPM).
 *
 * The four coefficients of every timestep [sqrt(abar), sqrt(1 - abar), cEps, cD] are computed once in
 * float64, rounded to float32 and uploaded as a [T, 4] table; a step gathers its samples' rows on the GPU
 * from the sampled timesteps (ops/addt.ts), so nothing is read back or uploaded per step.
 */
import type { Gpu } from "../gpu/context.ts";
import { ShapeError } from "../gpu/errors.ts";
import { keep, type Tensor } from "../tensor.ts";
import { map } from "../ops/map.ts";
import { timestepRows } from "../ops/addt.ts";
import { record, type Var } from "../autodiff/var.ts";
import type { Schedule } from "../diffusion/schedule.ts";

/** Columns of the per-sample coefficient rows. */
export const COEF = { sqrtAbar: 0, sqrtOneMinusAbar: 1, eps: 2, d: 3 } as const;
export const COEF_COLS = 4;

/** Which mixing a method uses (see the module comment). */
export type MixKind = "lambda" | "linf" | "plain";

export interface MixSpec {
  kind: MixKind;
  lambdaUnit: number;
  lambdaMax: number;
}

/** Ceiling of ADDT_linf's weight sqrt(abar) / sqrt(1 - abar) (the authors' clip(0, 10)). */
export const LINF_RATIO_MAX = 10;

/** lambda_t in float64 from abar_t. */
export function addtLambda(abar: number, lambdaUnit: number, lambdaMax: number): number {
  const v = lambdaUnit * Math.sqrt(abar) / Math.sqrt(1 - abar);
  return Math.min(Math.max(v, 0), lambdaMax);
}

/** ADDT_linf's weight of delta in float64 from abar_t. */
export function linfRatio(abar: number): number {
  return Math.min(Math.max(Math.sqrt(abar) / Math.sqrt(1 - abar), 0), LINF_RATIO_MAX);
}

/** [cEps, cD] of one timestep in float64. */
export function mixWeights(abar: number, spec: MixSpec): [number, number] {
  if (spec.kind === "plain") return [1, 0];
  if (spec.kind === "linf") return [1, linfRatio(abar)];
  const lambda = addtLambda(abar, spec.lambdaUnit, spec.lambdaMax);
  return [Math.sqrt(1 - lambda * lambda), lambda];
}

/** The [T, 4] coefficient table on the host (float64 values rounded to float32). */
export function mixTable(schedule: Schedule, spec: MixSpec): Float32Array {
  const out = new Float32Array(schedule.T * COEF_COLS);
  schedule.alphaBar.forEach((abar, k) => {
    const [cEps, cD] = mixWeights(abar, spec);
    out.set([Math.sqrt(abar), Math.sqrt(1 - abar), cEps, cD], k * COEF_COLS);
  });
  return out;
}

// one table per (schedule, spec), uploaded on first use and kept as long as the schedule lives
const tables = new WeakMap<Schedule, Map<string, Tensor>>();

function tableOf(gpu: Gpu, schedule: Schedule, spec: MixSpec): Tensor {
  let bySpec = tables.get(schedule);
  if (!bySpec) tables.set(schedule, bySpec = new Map());
  const key = `${spec.kind}:${spec.lambdaUnit}:${spec.lambdaMax}`;
  const hit = bySpec.get(key);
  if (hit && !hit.isDisposed && hit.gpu === gpu) return hit;
  const table = keep(gpu.tensor(mixTable(schedule, spec), [schedule.T, COEF_COLS]));
  bySpec.set(key, table);
  return table;
}

/** The per-sample coefficient rows [N, 4] of f32 timesteps t [N] (one gather on the GPU). */
export function mixCoefficients(gpu: Gpu, schedule: Schedule, spec: MixSpec, t: Tensor): Tensor {
  return timestepRows(gpu, tableOf(gpu, schedule, spec), t);
}

// ---------------------------------------------------------------- per-sample elementwise ops

function checkRows(op: string, x: Tensor, coefs: Tensor): number {
  if (coefs.shape.length !== 2 || coefs.shape[1] !== COEF_COLS || coefs.shape[0] !== x.shape[0]) {
    throw new ShapeError(op, `coefficients must be [${x.shape[0]}, ${COEF_COLS}], got ${coefs}`);
  }
  return x.size / x.shape[0];
}

/** A map input reading column `col` of the sample that output element `i` belongs to. */
const column = (coefs: Tensor, per: number, col: number) => ({
  t: coefs,
  index: `(i / ${per}u) * ${COEF_COLS}u + ${col}u`,
});

/** target = cEps * eps + cD * d per sample (raw op; eps and d of the same size, shaped like eps). */
export function mixNoise(gpu: Gpu, eps: Tensor, d: Tensor, coefs: Tensor): Tensor {
  const per = checkRows("mixNoise", eps, coefs);
  return map(gpu, "addt_mix", "x2 * x0 + x3 * x1", [
    eps,
    d,
    column(coefs, per, COEF.eps),
    column(coefs, per, COEF.d),
  ], { shape: eps.shape });
}

/**
 * x_t = sqrt(abar) x0 + sqrt(1 - abar) (cEps eps + cD d), differentiable with respect to d only (x0 and eps
 * are data): d x_t / d d = sqrt(1 - abar) cD per sample.
 */
export function noisedInput(gpu: Gpu, x0: Tensor, eps: Tensor, d: Var, coefs: Tensor): Var {
  const per = checkRows("noisedInput", x0, coefs);
  if (eps.size !== x0.size || d.value.size !== x0.size) {
    throw new ShapeError("noisedInput", `x0 [${x0.shape}], eps [${eps.shape}] and d [${d.shape}] differ`);
  }
  const sa = column(coefs, per, COEF.sqrtAbar), sb = column(coefs, per, COEF.sqrtOneMinusAbar);
  const ce = column(coefs, per, COEF.eps), cd = column(coefs, per, COEF.d);
  const xt = map(
    gpu,
    "addt_noised",
    "x3 * x0 + x4 * (x5 * x1 + x6 * x2)",
    [x0, eps, d.value, sa, sb, ce, cd],
    {
      shape: x0.shape,
    },
  );
  return record("addt_noised", xt, [d], (g) => [
    map(gpu, "addt_noised_backward", "x0 * x1 * x2", [g, sb, cd], { shape: d.shape }),
  ]);
}

/**
 * The predicted clean image in the classifier's [0, 1] range: ((x_t - sqrt(1 - abar) eps_theta) /
 * sqrt(abar) + 1) / 2, differentiable with respect to x_t and the prediction.
 */
export function x0HatUnit(xt: Var, pred: Var, coefs: Tensor): Var {
  const gpu = xt.gpu;
  const per = checkRows("x0HatUnit", xt.value, coefs);
  if (pred.value.size !== xt.value.size) {
    throw new ShapeError("x0HatUnit", `x_t [${xt.shape}] and prediction [${pred.shape}] differ`);
  }
  const sa = column(coefs, per, COEF.sqrtAbar), sb = column(coefs, per, COEF.sqrtOneMinusAbar);
  const out = map(gpu, "addt_x0hat", "(x0 - x3 * x1) / x2 * 0.5 + 0.5", [xt.value, pred.value, sa, sb], {
    shape: xt.shape,
  });
  return record("addt_x0hat", out, [xt, pred], (g) => [
    xt.requiresGrad ? map(gpu, "addt_x0hat_dxt", "x0 * 0.5 / x1", [g, sa], { shape: xt.shape }) : null,
    pred.requiresGrad
      ? map(gpu, "addt_x0hat_dpred", "-x0 * 0.5 * x2 / x1", [g, sa, sb], { shape: pred.shape })
      : null,
  ]);
}
