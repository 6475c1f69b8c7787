/**
 * The DDPM noise schedule (Ho et al. 2020; diffusers DDPMScheduler with beta_schedule "linear"), in
 * float64 on the host. GPU kernels receive the per-timestep coefficients as small tables.
 */

export interface Schedule {
  readonly T: number;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  /** abar_t = prod_{s <= t} alpha_s, for t = 0..T-1 */
  readonly alphaBar: Float64Array;
}

export function linearSchedule(T = 1000, betaStart = 1e-4, betaEnd = 0.02): Schedule {
  if (!(Number.isInteger(T) && T >= 2)) throw new RangeError(`schedule: T must be an integer >= 2, got ${T}`);
  const betas = new Float64Array(T);
  const alphas = new Float64Array(T);
  const alphaBar = new Float64Array(T);
  let prod = 1;
  for (let t = 0; t < T; t++) {
    // torch.linspace(beta_start, beta_end, T) in float32, as diffusers does
    betas[t] = Math.fround(betaStart + (betaEnd - betaStart) * (t / (T - 1)));
    alphas[t] = 1 - betas[t];
    prod *= alphas[t];
    alphaBar[t] = prod;
  }
  return { T, betas, alphas, alphaBar };
}

/**
 * The reverse-process timesteps from t* down to 0 in `steps` equal strides d = t* / steps, as diffusers'
 * `set_timesteps` followed by taking the tail from t* (the authors' DBP code): [t*, t* - d, ..., d, 0].
 * Each step goes from t to t - d; the step at t = 0 goes to the clean image (abar_prev = 1). So the
 * purifier makes steps + 1 network evaluations (the paper calls [100, 90, ..., 0] "NFE 10").
 */
export function reverseTimesteps(tStar: number, steps: number): number[] {
  if (!(Number.isInteger(tStar) && tStar >= 1)) {
    throw new RangeError(`t* must be a positive integer, got ${tStar}`);
  }
  if (!(Number.isInteger(steps) && steps >= 1 && tStar % steps === 0)) {
    throw new RangeError(`steps must be a positive divisor of t* (${tStar}), got ${steps}`);
  }
  const d = tStar / steps;
  const ts: number[] = [];
  for (let t = tStar; t >= 0; t -= d) ts.push(t);
  return ts;
}

/**
 * The timesteps for generation from pure noise in `steps` strides, as diffusers' `set_timesteps(steps)`
 * with the default "leading" spacing and steps_offset 0: step_ratio = T // steps, timesteps =
 * arange(0, steps) * step_ratio reversed, i.e. [(steps - 1) r, ..., r, 0]. The last step goes to the
 * clean image (abar_prev = 1), as diffusers does for a negative previous timestep.
 */
export function generationTimesteps(T: number, steps: number): number[] {
  if (!(Number.isInteger(steps) && steps >= 1 && steps <= T)) {
    throw new RangeError(`steps must be an integer in [1, ${T}], got ${steps}`);
  }
  const ratio = Math.floor(T / steps);
  return Array.from({ length: steps }, (_, k) => (steps - 1 - k) * ratio);
}

/** The project's schedule: T = 1000, linear betas from 1e-4 to 0.02 (DDPM, diffusers' default). */
export const DEFAULT_SCHEDULE: Schedule = linearSchedule();
