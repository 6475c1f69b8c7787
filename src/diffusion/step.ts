/**
 * One reverse-diffusion step from timestep t to tPrev (strided), DDPM ancestral or DDIM, as one fused
 * elementwise kernel. Both samplers (with the predicted x_0 clipped to [-1, 1]) are the same function
 *
 *   x_prev = c0 clamp(a x_t - b eps, -1, 1) + c1 x_t + sigma z,
 *
 * with float64 coefficients from the schedule baked into the kernel, so a step is one dispatch forward and
 * two backward (d/dx_t, d/deps) and stores nothing beyond its inputs. Formulas (read from diffusers'
 * DDPMScheduler.step / _get_variance and DDIMScheduler.step / _get_variance):
 *
 * DDPM (custom strided timesteps, as `previous_timestep`): alpha_prod_t = abar[t], alpha_prod_prev =
 * abar[tPrev] (1 when tPrev < 0), current_alpha = alpha_prod_t / alpha_prod_prev, current_beta =
 * 1 - current_alpha; x0 = clip((x - sqrt(1 - alpha_prod_t) eps) / sqrt(alpha_prod_t));
 * mean = sqrt(alpha_prod_prev) current_beta / (1 - alpha_prod_t) x0
 *        + sqrt(current_alpha) (1 - alpha_prod_prev) / (1 - alpha_prod_t) x;
 * variance fixed_small = max((1 - alpha_prod_prev) / (1 - alpha_prod_t) current_beta, 1e-20), fixed_large =
 * current_beta; noise only when t > 0. So a = 1 / sqrt(abar_t), b = sqrt(1 - abar_t) / sqrt(abar_t),
 * c0, c1 the two mean coefficients, sigma = sqrt(variance).
 *
 * DDIM: x0 clipped, then eps re-derived from the clipped x0, eps' = (x - sqrt(abar_t) x0) / sqrt(1 - abar_t).
 * This is diffusers' `use_clipped_model_output=True` (Glide's rule); diffusers' default (False) keeps the
 * raw eps in the direction term. std = eta sqrt((1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)),
 * x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - std^2) eps' + std z, with abar_prev = 1 for tPrev < 0
 * (diffusers' set_alpha_to_one=True). Substituting eps': c0 = sqrt(abar_prev) - dir sqrt(abar_t) /
 * sqrt(1 - abar_t), c1 = dir / sqrt(1 - abar_t), dir = sqrt(1 - abar_prev - std^2). Where the clip does not
 * engage this is exactly sqrt(abar_prev) x0 + dir eps.
 *
 * One difference from diffusers: its alphas_cumprod is a float32 cumprod; the schedule here is float64
 * (from the same float32 betas), so coefficients differ from diffusers' in the 7th digit.
 */
import type { Gpu } from "../gpu/context.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import { map } from "../ops/map.ts";
import { record, type Var } from "../autodiff/var.ts";
import type { Schedule } from "./schedule.ts";
import { checkTimestep, lit } from "./qsample.ts";

export type SamplerKind = "ddpm" | "ddim";
export type VarianceKind = "fixed_small" | "fixed_large";

/** Which reverse step: the sampler, the DDPM variance, the DDIM eta. */
export interface StepRule {
  sampler: SamplerKind;
  variance: VarianceKind;
  eta: number;
}

/** x_prev = c0 clamp(a x - b eps, -1, 1) + c1 x + sigma z. sigma = 0: the step adds no noise. */
export interface StepCoefficients {
  a: number;
  b: number;
  c0: number;
  c1: number;
  sigma: number;
}

/** The step's coefficients in float64. tPrev < 0 means the clean image (abar_prev = 1). */
export function stepCoefficients(
  schedule: Schedule,
  t: number,
  tPrev: number,
  rule: StepRule,
): StepCoefficients {
  checkTimestep("reverse step", schedule, t);
  if (!(Number.isInteger(tPrev) && tPrev < t)) {
    throw new RangeError(`reverse step: previous timestep ${tPrev} must be an integer below ${t}`);
  }
  const abar = schedule.alphaBar[t];
  const abarPrev = tPrev >= 0 ? schedule.alphaBar[tPrev] : 1;
  const sa = Math.sqrt(abar), sb = Math.sqrt(1 - abar);
  const a = 1 / sa, b = sb / sa;
  if (rule.sampler === "ddpm") {
    const currentAlpha = abar / abarPrev, currentBeta = 1 - currentAlpha;
    const c0 = Math.sqrt(abarPrev) * currentBeta / (1 - abar);
    const c1 = Math.sqrt(currentAlpha) * (1 - abarPrev) / (1 - abar);
    const variance = rule.variance === "fixed_small"
      ? Math.max((1 - abarPrev) / (1 - abar) * currentBeta, 1e-20)
      : currentBeta;
    return { a, b, c0, c1, sigma: t > 0 ? Math.sqrt(variance) : 0 };
  }
  if (!(rule.eta >= 0)) throw new RangeError(`DDIM: eta ${rule.eta} must be >= 0`);
  const std = rule.eta * Math.sqrt((1 - abarPrev) / (1 - abar) * (1 - abar / abarPrev));
  const dir2 = 1 - abarPrev - std * std;
  // rounding can leave -1e-17 at tPrev < 0; a real negative (eta > 1) would be NaN in diffusers
  if (dir2 < -1e-12) throw new RangeError(`DDIM: eta ${rule.eta} makes 1 - abar_prev - std^2 negative`);
  const dir = Math.sqrt(Math.max(dir2, 0));
  return { a, b, c0: Math.sqrt(abarPrev) - dir * sa / sb, c1: dir / sb, sigma: std };
}

/** WGSL for the unclipped predicted x_0 from (x, eps) named vx, ve: the same text in every kernel, so the
 * backward's clip mask is computed exactly as the forward's clamp saw it. */
const x0Expr = (c: StepCoefficients, vx: string, ve: string) => `(${lit(c.a)} * ${vx} - ${lit(c.b)} * ${ve})`;

/** The step forward (raw op). z is required when sigma > 0 and ignored otherwise. */
export function stepForward(gpu: Gpu, x: Tensor, eps: Tensor, z: Tensor | null, c: StepCoefficients): Tensor {
  if (eps.size !== x.size) throw new ShapeError("reverse step", `eps [${eps.shape}] vs x [${x.shape}]`);
  const mean = `${lit(c.c0)} * clamp(${x0Expr(c, "x0", "x1")}, -1.0, 1.0) + ${lit(c.c1)} * x0`;
  if (c.sigma === 0) return map(gpu, "reverse_step", mean, [x, eps]);
  if (!z) {
    throw new ShapeError("reverse step", "this step adds noise (sigma > 0) but no noise tensor was given");
  }
  if (z.size !== x.size) throw new ShapeError("reverse step", `noise [${z.shape}] vs x [${x.shape}]`);
  return map(gpu, "reverse_step", `${mean} + ${lit(c.sigma)} * x2`, [x, eps, z]);
}

/** [d/dx, d/deps] of the step given g; the clip passes gradient where |x0| <= 1 (clampBackward's rule). */
export function stepBackward(
  gpu: Gpu,
  x: Tensor,
  eps: Tensor,
  g: Tensor,
  c: StepCoefficients,
  need: readonly [boolean, boolean] = [true, true],
): [Tensor | null, Tensor | null] {
  const inside = `abs(${x0Expr(c, "x1", "x2")}) <= 1.0`;
  const dx = need[0]
    ? map(gpu, "reverse_step_dx", `x0 * (${lit(c.c1)} + select(0.0, ${lit(c.c0 * c.a)}, ${inside}))`, [
      g,
      x,
      eps,
    ])
    : null;
  const deps = need[1]
    ? map(gpu, "reverse_step_deps", `x0 * select(0.0, ${lit(-c.c0 * c.b)}, ${inside})`, [g, x, eps])
    : null;
  return [dx, deps];
}

/** Differentiable step (x_t, eps) -> x_prev; the noise z is a constant. */
export function reverseStep(x: Var, eps: Var, z: Tensor | null, c: StepCoefficients): Var {
  const gpu = x.gpu;
  const out = stepForward(gpu, x.value, eps.value, z, c);
  return record(
    "reverse_step",
    out,
    [x, eps],
    (g) => stepBackward(gpu, x.value, eps.value, g, c, [x.requiresGrad, eps.requiresGrad]),
  );
}
