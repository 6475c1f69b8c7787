/** Differentiable GroupNorm: the raw forward saves mean and rstd, which the backward kernels reuse. */
import * as raw from "../ops/groupnorm.ts";
import { record, type Var } from "./var.ts";

/** GroupNorm of x ([N,C,H,W] or [N,C]) with `groups` groups and per-channel gamma, beta ([C]). */
export function groupNorm(x: Var, gamma: Var, beta: Var, groups: number, eps = 1e-5): Var {
  const gpu = x.gpu;
  const { y, mean, rstd } = raw.groupNorm(gpu, x.value, gamma.value, beta.value, groups, eps);
  const out = record("groupNorm", y, [x, gamma, beta], (dy) => {
    const g = raw.groupNormBackward(gpu, dy, x.value, mean, rstd, gamma.value, groups);
    const pick = (v: Var, t: typeof g.dx) => {
      if (v.requiresGrad) return t;
      t.dispose();
      return null;
    };
    return [pick(x, g.dx), pick(gamma, g.dgamma), pick(beta, g.dbeta)];
  });
  // nothing recorded (inference): the saved statistics are not needed
  if (!out.requiresGrad) {
    mean.dispose();
    rstd.dispose();
  }
  return out;
}
