/** Differentiable softmax, logSoftmax (last axis) and cross-entropy with integer labels. */
import * as ops from "../ops/softmax.ts";
import type { Tensor } from "../tensor.ts";
import { record, Var } from "./var.ts";

export function softmax(x: Var): Var {
  const gpu = x.gpu;
  const y = ops.softmax(gpu, x.value);
  return record("softmax", y, [x], (g) => [ops.softmaxBackward(gpu, y, g)]);
}

export function logSoftmax(x: Var): Var {
  const gpu = x.gpu;
  const y = ops.logSoftmax(gpu, x.value);
  return record("logSoftmax", y, [x], (g) => [ops.logSoftmaxBackward(gpu, y, g)]);
}

const labelTensor = (labels: Tensor | Var): Tensor => labels instanceof Var ? labels.value : labels;

/** Mean cross-entropy: logits [N, C], labels u32 [N] (not differentiated) -> [1]. */
export function crossEntropy(logits: Var, labels: Tensor | Var): Var {
  const gpu = logits.gpu, lab = labelTensor(labels);
  const loss = ops.crossEntropy(gpu, logits.value, lab);
  return record("crossEntropy", loss, [logits], (g) => [
    ops.crossEntropyBackward(gpu, logits.value, lab, g, false),
  ]);
}

/** Per-sample cross-entropy -> [N] (attacks take a gradient per sample). */
export function crossEntropyPerSample(logits: Var, labels: Tensor | Var): Var {
  const gpu = logits.gpu, lab = labelTensor(labels);
  const loss = ops.crossEntropyPerSample(gpu, logits.value, lab);
  return record("crossEntropyPerSample", loss, [logits], (g) => [
    ops.crossEntropyBackward(gpu, logits.value, lab, g, true),
  ]);
}
