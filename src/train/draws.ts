/**
 * The random draws of a DDPM training step. Every draw of step s comes from one Philox key
 * (seed, DDPM_STREAM, counter = s) at a fixed site: timesteps at site 0, noise at site 1, dropout from
 * site 2 on. So a draw depends on (seed, step) only, never on how many steps this process has run.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32 } from "../gpu/template.ts";
import type { Tensor } from "../tensor.ts";
import { map } from "../ops/map.ts";
import { uniform } from "../ops/random.ts";

/** The RNG stream of DDPM training (other users of the same seed use other streams). */
export const DDPM_STREAM = 0x4444504d; // "DDPM"
/** The RNG stream of classifier training (dropout). */
export const CLASSIFIER_STREAM = 0x434c5346; // "CLSF"
export const SITE_TIMESTEPS = 0;
export const SITE_NOISE = 1;
export const SITE_DROPOUT = 2;

/** t ~ U{0..T-1} per sample as f32 [n]: floor(u T) of a Philox uniform (u < 1), clamped below T. */
export function drawTimesteps(gpu: Gpu, n: number, T: number, key: Tensor, site = SITE_TIMESTEPS): Tensor {
  const u = uniform(gpu, [n], key, site);
  const t = map(gpu, "ddpm_timesteps", `min(floor(x0 * ${f32(T)}), ${f32(T - 1)})`, [u]);
  u.dispose();
  return t;
}
