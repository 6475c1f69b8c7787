/**
 * Diffusion purification (DiffPure-style "DP_DDPM" / "DP_DDIM"): an image x in [0, 1] is mapped to
 * [-1, 1], forward-noised to t*, denoised by the reverse process on `nfe` strided steps down to 0, mapped
 * back and clamped to [0, 1]. DP_DDPM is DDPM ancestral sampling with the fixed_large variance, DP_DDIM is
 * DDIM with eta 0. The randomness is an explicit NoiseSet (diffusion/noise.ts), so the caller decides what
 * is fresh and what is held fixed.
 *
 * The whole map is differentiable: forward noising, every reverse step (each one checkpointed, so memory
 * stays bounded for 10..100 steps) and the final clamp, so an attack gets the exact gradient.
 */
import type { Var } from "../autodiff/var.ts";
import * as ad from "../autodiff/elementwise.ts";
import {
  DEFAULT_SCHEDULE,
  type EpsModel,
  type NoiseSet,
  purifyPipeline,
  reverseIsStochastic,
  reverseTimesteps,
  type SamplerKind,
  type SamplerOptions,
  type Schedule,
  type VarianceKind,
} from "../diffusion/sampler.ts";

export interface PurifierOptions {
  /** Diffusion time of the forward noising, an integer in [1, T - 1]. */
  tStar: number;
  /** Reverse strides from t* to 0 (the paper's "NFE": [t*, t* - d, ..., d, 0], the network runs nfe + 1
   * times). Must divide t*. */
  nfe: number;
  sampler: SamplerKind;
  /** DDPM variance; default "fixed_large" (the DP_DDPM). */
  variance?: VarianceKind;
  /** DDIM eta; default 0 (deterministic reverse process). */
  eta?: number;
  schedule?: Schedule;
  /** Recompute each reverse step in the backward pass (default true). */
  checkpoint?: boolean;
}

/** Which noise a purifier consumes: the length of the reverse list and whether it draws any. */
export interface NoiseShape {
  /** Entries of NoiseSet.reverse (the reverse steps, nfe + 1). */
  nSteps: number;
  reverseStochastic: boolean;
}

export class DiffusionPurifier implements NoiseShape {
  readonly timesteps: number[];
  readonly nSteps: number;
  readonly reverseStochastic: boolean;
  private readonly sampling: SamplerOptions;

  constructor(readonly eps: EpsModel, readonly options: PurifierOptions) {
    const schedule = options.schedule ?? DEFAULT_SCHEDULE;
    if (!(options.tStar < schedule.T)) {
      throw new RangeError(`t* ${options.tStar} must be below T = ${schedule.T}`);
    }
    this.timesteps = reverseTimesteps(options.tStar, options.nfe);
    this.nSteps = this.timesteps.length;
    const ddim = options.sampler === "ddim";
    this.sampling = {
      sampler: options.sampler,
      ...(ddim ? { eta: options.eta ?? 0 } : { variance: options.variance ?? "fixed_large" }),
      checkpoint: options.checkpoint ?? true,
      schedule,
    };
    this.reverseStochastic = reverseIsStochastic(this.sampling);
  }

  /** Network evaluations per purification. */
  get modelCalls(): number {
    return this.nSteps;
  }

  /** The purified image in [0, 1] for x in [0, 1] with the given randomness. */
  purify(x: Var, noise: NoiseSet): Var {
    const { tStar, nfe } = this.options;
    const symmetric = ad.addScalar(ad.mulScalar(x, 2), -1);
    const x0 = purifyPipeline(this.eps, symmetric, tStar, nfe, noise, this.sampling);
    return ad.clamp(ad.addScalar(ad.mulScalar(x0, 0.5), 0.5), 0, 1);
  }
}
