/**
 * The purifier's randomness as an explicit value: a noise set { forward, reverse } drawn from the
 * counter-based generator (ops/random.ts), so that an attack can hold the randomness fixed (or redraw it
 * per EOT sample) and any draw can be reproduced bit for bit from (seed, stream, counter).
 *
 * Every tensor of a set comes from the one key at its own site: forward at site 0, reverse step k at
 * site k + 1. So a set depends only on the key, the shape and k, never on call order; independent sets
 * use another counter (or stream) in the key.
 */
import type { Gpu } from "../gpu/context.ts";
import type { Tensor } from "../tensor.ts";
import { normal } from "../ops/random.ts";
import type { SamplerKind } from "./step.ts";

export interface NoiseSet {
  /** The forward-noising draw (shape of x); also the starting noise x_T of generation. */
  readonly forward: Tensor;
  /** One draw per reverse step (the step at t = 0 adds none, so its entry is unused); empty for DDIM
   * with eta 0, which is deterministic. */
  readonly reverse: readonly Tensor[];
}

export interface NoiseOptions {
  sampler?: SamplerKind;
  eta?: number;
}

/** Whether the sampler's reverse steps draw noise. */
export function reverseIsStochastic(options: NoiseOptions): boolean {
  return (options.sampler ?? "ddpm") === "ddpm" || (options.eta ?? 0) > 0;
}

/** The forward-noising draw (site 0 of the key). */
export function forwardNoise(gpu: Gpu, shape: readonly number[], key: Tensor): Tensor {
  return normal(gpu, shape, key, 0);
}

/** The noise of reverse step k (site k + 1 of the key). */
export function reverseNoise(gpu: Gpu, shape: readonly number[], key: Tensor, k: number): Tensor {
  if (!(Number.isInteger(k) && k >= 0)) throw new RangeError(`reverse noise: step ${k}`);
  return normal(gpu, shape, key, k + 1);
}

/**
 * Draw a noise set for `nSteps` reverse steps (the length of the timestep list: steps + 1 for
 * `reverseTimesteps(t*, steps)`). `key` is a u32[4] key tensor (`rngKey(gpu, seed, stream, counter)`).
 */
export function drawNoiseSet(
  gpu: Gpu,
  shape: readonly number[],
  nSteps: number,
  key: Tensor,
  options: NoiseOptions = {},
): NoiseSet {
  if (!(Number.isInteger(nSteps) && nSteps >= 1)) throw new RangeError(`drawNoiseSet: nSteps ${nSteps}`);
  const forward = forwardNoise(gpu, shape, key);
  const reverse = reverseIsStochastic(options)
    ? Array.from({ length: nSteps }, (_, k) => reverseNoise(gpu, shape, key, k))
    : [];
  return { forward, reverse };
}
