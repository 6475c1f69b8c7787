/**
 * Diffusion samplers on the GPU: the reverse process (DDPM ancestral or DDIM) over a list of strided
 * timesteps, the purification pipeline (forward noising to t*, then the reverse process back to 0) and
 * generation from pure noise. Everything is differentiable end to end (attacks backpropagate through
 * every reverse step); with `checkpoint` each step (model call and update) keeps only its input and is
 * recomputed in the backward pass, so 100 reverse steps fit.
 *
 * The loops record dispatches only: no readback, no upload. Per-step constants (the step coefficients,
 * the timestep value) are baked into cached kernels; randomness comes in as an explicit noise set.
 */
import { scope, type Tensor } from "../tensor.ts";
import { constant, gradEnabled, noGrad, type Var } from "../autodiff/var.ts";
import { checkpoint as checkpointed } from "../autodiff/checkpoint.ts";
import { ShapeError } from "../gpu/errors.ts";
import { DEFAULT_SCHEDULE, generationTimesteps, reverseTimesteps, type Schedule } from "./schedule.ts";
import { qSample } from "./qsample.ts";
import { reverseStep, type SamplerKind, stepCoefficients, type StepRule, type VarianceKind } from "./step.ts";
import { forwardNoise, type NoiseSet, reverseNoise } from "./noise.ts";

export { DEFAULT_SCHEDULE, generationTimesteps, linearSchedule, reverseTimesteps } from "./schedule.ts";
export type { Schedule } from "./schedule.ts";
export { qSample, qSampleBackward, qSampleRaw } from "./qsample.ts";
export { reverseStep, stepBackward, stepCoefficients, stepForward } from "./step.ts";
export type { SamplerKind, StepCoefficients, StepRule, VarianceKind } from "./step.ts";
export { drawNoiseSet, forwardNoise, reverseIsStochastic, reverseNoise } from "./noise.ts";
export type { NoiseOptions, NoiseSet } from "./noise.ts";

/** The noise-prediction network: eps(x_t, t) with t an f32 [N] tensor of timesteps. */
export type EpsModel = (x: Var, t: Tensor) => Var;

export interface SamplerOptions {
  /** Default "ddpm". */
  sampler?: SamplerKind;
  /** DDPM variance; default "fixed_small" (diffusers' default). Ignored by DDIM. */
  variance?: VarianceKind;
  /** DDIM eta (0: deterministic); default 0. DDPM takes none. */
  eta?: number;
  /** Recompute each model call in the backward pass instead of keeping its activations. */
  checkpoint?: boolean;
  /** Default: T = 1000 linear (DEFAULT_SCHEDULE). */
  schedule?: Schedule;
}

export interface ReverseOptions extends SamplerOptions {
  /** Noise per reverse step (entry k for the step from timesteps[k]); null when no step draws any. */
  noises?: readonly Tensor[] | null;
}

function ruleOf(options: SamplerOptions): StepRule {
  const sampler = options.sampler ?? "ddpm";
  if (sampler !== "ddpm" && sampler !== "ddim") throw new RangeError(`unknown sampler "${sampler}"`);
  const variance = options.variance ?? "fixed_small";
  if (variance !== "fixed_small" && variance !== "fixed_large") {
    throw new RangeError(`unknown variance "${variance}"`);
  }
  const eta = options.eta ?? 0;
  if (sampler === "ddpm" && eta !== 0) throw new RangeError("eta applies to DDIM only (DDPM is eta = 1)");
  return { sampler, variance, eta };
}

function checkTimesteps(timesteps: readonly number[], T: number): void {
  if (timesteps.length === 0) throw new RangeError("reverse process: no timesteps");
  timesteps.forEach((t, k) => {
    if (!(Number.isInteger(t) && t >= 0 && t < T)) {
      throw new RangeError(`reverse process: timestep ${t} is not an integer in [0, ${T - 1}]`);
    }
    if (k > 0 && !(t < timesteps[k - 1])) {
      throw new RangeError(`reverse process: timesteps must decrease, got [${timesteps}]`);
    }
  });
}

/** f32 [n] filled with t (one cached fill kernel per value; no upload). */
function timestepTensor(x: Var, t: number): Tensor {
  const tt = x.gpu.empty([x.shape[0]]);
  x.gpu.fill(tt, t);
  return tt;
}

/**
 * The reverse process from xT through `timesteps` (strictly decreasing, e.g. reverseTimesteps(t*, S) =
 * [t*, ..., d, 0]): step k goes from timesteps[k] to timesteps[k + 1], the last to the clean image
 * (abar_prev = 1). With gradients disabled (noGrad), each step's intermediates are released at once;
 * otherwise they are kept for the backward pass (fewer with `checkpoint`).
 */
export function reverseDiffuse(
  model: EpsModel,
  xT: Var,
  timesteps: readonly number[],
  options: ReverseOptions = {},
): Var {
  const noises = options.noises ?? null;
  return runReverse(model, xT, timesteps, options, (k) => noises?.[k] ?? null);
}

function runReverse(
  model: EpsModel,
  xT: Var,
  timesteps: readonly number[],
  options: SamplerOptions,
  noiseAt: (k: number) => Tensor | null,
): Var {
  const schedule = options.schedule ?? DEFAULT_SCHEDULE;
  const rule = ruleOf(options);
  checkTimesteps(timesteps, schedule.T);
  const coefficients = timesteps.map((t, k) => stepCoefficients(schedule, t, timesteps[k + 1] ?? -1, rule));
  let x = xT;
  for (let k = 0; k < timesteps.length; k++) {
    const c = coefficients[k];
    const step = (): Var => {
      const z = c.sigma > 0 ? noiseAt(k) : null;
      if (c.sigma > 0 && (!z || z.size !== x.value.size)) {
        const which = `step ${k} (t = ${timesteps[k]})`;
        throw new ShapeError("reverse process", `${which} adds noise: give a tensor of x's size, got ${z}`);
      }
      const modelStep = (xv: Var, tv: Var): Var => {
        const eps = model(xv, tv.value);
        if (eps.value.size !== xv.value.size) {
          throw new ShapeError("reverse process", `the model returned [${eps.shape}] for x [${xv.shape}]`);
        }
        return reverseStep(xv, eps, z, c);
      };
      // the timestep tensor goes in as a constant input, so that it lives as long as the graph needs it
      const t = constant(timestepTensor(x, timesteps[k]));
      // The checkpoint spans the whole step, not only the model call: x_t then has one use in the outer
      // graph, so its gradient is summed in the same order as without checkpointing (bit-identical), and
      // a step keeps only its input instead of its input and eps.
      return options.checkpoint ? checkpointed(modelStep, [x, t], "reverse_step") : modelStep(x, t);
    };
    if (gradEnabled()) x = step();
    else {
      const prev = x;
      x = scope(step);
      if (prev !== xT) prev.value.dispose();
    }
  }
  return x;
}

/**
 * Purification: x (a Var in [-1, 1]) noised to t* with noiseSet.forward, then denoised through
 * reverseTimesteps(t*, steps) (steps + 1 model evaluations) with noiseSet.reverse.
 */
export function purifyPipeline(
  model: EpsModel,
  x: Var,
  tStar: number,
  steps: number,
  noiseSet: NoiseSet,
  options: SamplerOptions = {},
): Var {
  const schedule = options.schedule ?? DEFAULT_SCHEDULE;
  const timesteps = reverseTimesteps(tStar, steps);
  const xt = qSample(x, tStar, noiseSet.forward, schedule);
  return reverseDiffuse(model, xt, timesteps, { ...options, noises: noiseSet.reverse });
}

/**
 * Sample images of `shape` from pure noise in `steps` strides (diffusers' set_timesteps(steps)), without
 * gradients. The randomness is that of drawNoiseSet(gpu, shape, steps, key, options): x_T is its forward
 * draw, step k's noise its reverse[k], but each is drawn when needed and released after its step, so
 * memory does not grow with the number of steps. Returns a tensor owned by the caller's scope.
 */
export function generate(
  model: EpsModel,
  shape: readonly number[],
  steps: number,
  key: Tensor,
  options: SamplerOptions = {},
): Tensor {
  const gpu = key.gpu;
  const schedule = options.schedule ?? DEFAULT_SCHEDULE;
  const timesteps = generationTimesteps(schedule.T, steps);
  return noGrad(() =>
    scope(() => {
      const xT = constant(forwardNoise(gpu, shape, key));
      const run = { ...options, checkpoint: false };
      return runReverse(model, xT, timesteps, run, (k) => reverseNoise(gpu, shape, key, k)).value;
    })
  );
}
