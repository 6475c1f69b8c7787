/** Differentiable single-head attention softmax(scale q k^T) v over [B, L, D] tensors. */
import * as ops from "../ops/attention.ts";
import { record, type Var } from "./var.ts";

export function attention(q: Var, k: Var, v: Var, scale: number): Var {
  const gpu = q.gpu;
  const { out, probs } = ops.attention(gpu, q.value, k.value, v.value, scale);
  const y = record("attention", out, [q, k, v], (g) => {
    const { dq, dk, dv } = ops.attentionBackward(gpu, g, q.value, k.value, v.value, probs, scale, {
      q: q.requiresGrad,
      k: k.requiresGrad,
      v: v.requiresGrad,
    });
    return [dq, dk, dv];
  });
  // the probabilities are only kept for the backward
  if (!y.requiresGrad) probs.dispose();
  return y;
}
