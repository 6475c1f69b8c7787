/**
 * The attack gradient with Expectation over Transformation: the gradient of the per-sample loss summed
 * over the batch, summed over `eot` calls of the model (each with its own randomness draw), accumulated
 * into one input leaf. Each call's graph (the purifier's checkpointed steps and the classifier) is freed
 * as soon as its backward pass is done, so memory does not grow with eot. No readback.
 */
import type { Tensor } from "../tensor.ts";
import { keep, scope } from "../tensor.ts";
import { backward, leaf } from "../autodiff/var.ts";
import { addInPlace, map } from "../ops/map.ts";
import { f32 } from "../gpu/template.ts";
import { type AttackLoss, correctFlags, perSampleLoss } from "./losses.ts";
import type { AttackModel } from "./model.ts";

export interface LossGradient {
  /** d (sum of the losses over the batch and the eot draws) / d x, shape of x. */
  grad: Tensor;
  /** Per-sample loss [N], averaged over the eot draws. */
  loss: Tensor;
  /** 1.0 where the last draw still classified the sample correctly [N] (AutoAttack's bookkeeping). */
  correct: Tensor;
}

/** Gradient, loss and correctness at x. The returned tensors are owned by the caller (dispose them). */
export function lossGradient(
  model: AttackModel,
  x: Tensor,
  labels: Tensor,
  loss: AttackLoss,
  eot: number,
): LossGradient {
  if (!(Number.isInteger(eot) && eot >= 1)) {
    throw new RangeError(`EOT must be a positive integer, got ${eot}`);
  }
  const gpu = x.gpu;
  const xv = leaf(x, "attacked input");
  const lossSum = keep(gpu.zeros([x.shape[0]]));
  let correct: Tensor | null = null;
  for (let j = 0; j < eot; j++) {
    const flags = scope(() => {
      const logits = model.logits(xv);
      const l = perSampleLoss(logits, labels, loss);
      addInPlace(gpu, lossSum, l.value);
      backward(l);
      return j === eot - 1 ? correctFlags(gpu, logits.value, labels) : null;
    });
    if (flags) correct = keep(flags);
  }
  if (eot > 1) map(gpu, "eot_mean", `x0 * ${f32(1 / eot)}`, [lossSum], { inplace: true });
  return { grad: xv.grad!, loss: lossSum, correct: correct! };
}
