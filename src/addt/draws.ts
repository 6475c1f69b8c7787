/**
 * The random draws of an ADDT fine-tuning step. Every draw of step s comes from one Philox key
 * (seed, ADDT_STREAM, counter = s) at its own site, so a draw depends on (seed, step) only and a resumed
 * run draws exactly what the uninterrupted run drew:
 *   timesteps 0, the initial eps_d 1, the final noise 2, the final pass's dropout from 16 on;
 *   CGPO / PGD pass k (k = 0, 1, ...): its noise at 1024 (k + 1), its RBGM sample at 1024 (k + 1) + 1 and
 *   its dropout from 1024 (k + 1) + 16 on.
 * A UNet draws one dropout site per resnet, so up to 1008 resnets fit between two passes' sites.
 */

/** The RNG stream of ADDT fine-tuning (DDPM training uses another stream of the same seed). */
export const ADDT_STREAM = 0x41444454; // "ADDT"
export const SITE_TIMESTEPS = 0;
export const SITE_EPS_D = 1;
export const SITE_NOISE = 2;
export const SITE_DROPOUT = 16;
export const PASS_STRIDE = 1024;
/** Dropout sites available to one UNet pass. */
export const MAX_DROPOUT_SITES = PASS_STRIDE - SITE_DROPOUT;

export interface PassSites {
  noise: number;
  rbgm: number;
  dropout: number;
}

/** The sites of CGPO / PGD pass k. */
export function passSites(k: number): PassSites {
  const base = PASS_STRIDE * (k + 1);
  return { noise: base, rbgm: base + 1, dropout: base + SITE_DROPOUT };
}
