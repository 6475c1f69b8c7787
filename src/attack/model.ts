/**
 * What an attack sees: a function from images to logits. Each call may use another draw of the
 * defense's randomness (the attack does not know or care which); `stochastic` says whether calls can
 * differ, i.e. whether averaging gradients over several calls (EOT) can help.
 */
import type { Var } from "../autodiff/var.ts";

export interface AttackModel {
  /** Logits [N, classes] of x [N, C, H, W] in [0, 1]; differentiable with respect to x. */
  logits(x: Var): Var;
  readonly stochastic: boolean;
}
