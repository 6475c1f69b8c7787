/**
 * Float64 references of the reverse diffusion for the sampler and defense tests: one step as diffusers
 * writes it, with the unclipped x0 it produced (where the clip at +-1 makes the step non-smooth).
 */
import { DEFAULT_SCHEDULE } from "../src/diffusion/schedule.ts";
import type { StepRule } from "../src/diffusion/sampler.ts";

const sched = DEFAULT_SCHEDULE;
type F64 = Float64Array<ArrayBufferLike>;
const F64 = Float64Array;

/** One step, written as diffusers writes it (not as the kernel's rearranged coefficients). */
export function refStep(
  x: F64,
  eps: F64,
  z: F64 | null,
  t: number,
  tPrev: number,
  rule: StepRule,
  clip = true,
): { out: F64; x0raw: F64 } {
  const abar = sched.alphaBar[t], abarPrev = tPrev >= 0 ? sched.alphaBar[tPrev] : 1;
  const out = new F64(x.length), x0raw = new F64(x.length);
  for (let i = 0; i < x.length; i++) {
    const raw = (x[i] - Math.sqrt(1 - abar) * eps[i]) / Math.sqrt(abar);
    x0raw[i] = raw;
    const x0 = clip ? Math.min(1, Math.max(-1, raw)) : raw;
    if (rule.sampler === "ddpm") {
      const currentAlpha = abar / abarPrev, currentBeta = 1 - currentAlpha;
      const mean = (Math.sqrt(abarPrev) * currentBeta / (1 - abar)) * x0 +
        (Math.sqrt(currentAlpha) * (1 - abarPrev) / (1 - abar)) * x[i];
      const small = Math.max((1 - abarPrev) / (1 - abar) * currentBeta, 1e-20);
      const variance = rule.variance === "fixed_small" ? small : currentBeta;
      out[i] = mean + (t > 0 ? Math.sqrt(variance) * z![i] : 0);
    } else {
      const epsClipped = (x[i] - Math.sqrt(abar) * x0) / Math.sqrt(1 - abar);
      const std = rule.eta * Math.sqrt((1 - abarPrev) / (1 - abar) * (1 - abar / abarPrev));
      out[i] = Math.sqrt(abarPrev) * x0 + Math.sqrt(1 - abarPrev - std * std) * epsClipped +
        (rule.eta > 0 ? std * z![i] : 0);
    }
  }
  return { out, x0raw };
}

/** The smallest distance of any unclipped x0 from the clip bounds +-1. */
export const clipMargin = (x0raws: readonly F64[]) =>
  Math.min(...x0raws.map((a) => a.reduce((m, v) => Math.min(m, Math.abs(Math.abs(v) - 1)), Infinity)));
