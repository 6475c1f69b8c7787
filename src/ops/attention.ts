/**
 * Single-head scaled dot-product attention, composed from the GEMM and row-softmax kernels:
 * S = scale q k^T (the scale folded into the GEMM), P = softmax(S), out = P v. P is returned for the
 * backward, which is five more GEMM/softmax dispatches and no transpose kernels (the GEMM reads
 * transposes in place). Used over the spatial positions of a UNet feature map (L = 49 or 196).
 */
import type { Gpu } from "../gpu/context.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import { matmul, type MatmulVariant } from "./matmul.ts";
import { softmax, softmaxBackward } from "./softmax.ts";

export interface AttentionOptions {
  /** Force the GEMM variant (tests); default chosen by the adapter. */
  variant?: MatmulVariant;
}

function check(op: string, q: Tensor, k: Tensor, v: Tensor): void {
  const ok = q.shape.length === 3 && k.shape.length === 3 && v.shape.length === 3 &&
    q.shape[0] === k.shape[0] && k.shape[0] === v.shape[0] && q.shape[2] === k.shape[2] &&
    k.shape[1] === v.shape[1];
  if (!ok) {
    throw new ShapeError(
      op,
      `q [${q.shape}], k [${k.shape}], v [${v.shape}]: want [B,Lq,D], [B,Lk,D], [B,Lk,Dv]`,
    );
  }
}

/** out = softmax(scale q k^T) v: q [B,Lq,D], k [B,Lk,D], v [B,Lk,Dv] -> out [B,Lq,Dv], probs [B,Lq,Lk]. */
export function attention(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  scale: number,
  opts: AttentionOptions = {},
): { out: Tensor; probs: Tensor } {
  check("attention", q, k, v);
  const variant = opts.variant;
  const scores = matmul(gpu, q, k, { transB: true, alpha: scale, variant });
  const probs = softmax(gpu, scores);
  scores.dispose();
  const out = matmul(gpu, probs, v, { variant });
  return { out, probs };
}

/**
 * Gradients of `attention` given dOut and the saved probs P: dv = P^T dOut; dP = dOut v^T;
 * dS = P * (dP - rowsum(dP * P)); dq = scale dS k; dk = scale dS^T q. `need` skips unused gradients.
 */
export function attentionBackward(
  gpu: Gpu,
  dOut: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  probs: Tensor,
  scale: number,
  need: { q?: boolean; k?: boolean; v?: boolean } = {},
  opts: AttentionOptions = {},
): { dq: Tensor | null; dk: Tensor | null; dv: Tensor | null } {
  check("attentionBackward", q, k, v);
  const variant = opts.variant;
  const outShape = [q.shape[0], q.shape[1], v.shape[2]];
  if (dOut.size !== outShape[0] * outShape[1] * outShape[2]) {
    throw new ShapeError("attentionBackward", `dOut [${dOut.shape}] for an output [${outShape}]`);
  }
  // the tape matches gradients by size only: view dOut with the output's shape
  if (dOut.shape.join() !== outShape.join()) dOut = dOut.reshape(outShape);
  const dv = need.v ?? true ? matmul(gpu, probs, dOut, { transA: true, variant }) : null;
  let dq: Tensor | null = null, dk: Tensor | null = null;
  if ((need.q ?? true) || (need.k ?? true)) {
    const dp = matmul(gpu, dOut, v, { transB: true, variant });
    const ds = softmaxBackward(gpu, probs, dp);
    dp.dispose();
    if (need.q ?? true) dq = matmul(gpu, ds, k, { alpha: scale, variant });
    if (need.k ?? true) dk = matmul(gpu, ds, q, { transA: true, alpha: scale, variant });
    ds.dispose();
  }
  return { dq, dk, dv };
}
