/**
 * The attacks' per-sample losses on logits [N, K] with u32 labels [N] (shaders/attack_loss.wgsl): cross-
 * entropy and Croce & Hein's DLR loss, each a forward [N] and a backward [N, K], plus the 0/1 "still
 * correct" flags the attacks and the evaluation count. Per sample, so that an attack maximises the sum
 * over the batch and each image's gradient does not depend on the batch it is in.
 */
import type { Gpu } from "../gpu/context.ts";
import { wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import { record, type Var } from "../autodiff/var.ts";
import template from "../../shaders/attack_loss.wgsl" with { type: "text" };

export type AttackLoss = "ce" | "dlr";

function checkShapes(
  op: string,
  logits: Tensor,
  labels: Tensor,
  kind: AttackLoss | "correct",
): [number, number] {
  if (logits.shape.length !== 2 || logits.dtype !== "f32") {
    throw new ShapeError(op, `logits must be f32 [N, K], got ${logits}`);
  }
  const [n, k] = logits.shape;
  if (labels.dtype !== "u32" || labels.size !== n) {
    throw new ShapeError(op, `labels must be u32 [${n}], got ${labels}`);
  }
  if (kind === "dlr" && k < 3) throw new ShapeError(op, `the DLR loss needs at least 3 classes, got ${k}`);
  return [n, k];
}

function run(
  gpu: Gpu,
  what: AttackLoss | "correct",
  logits: Tensor,
  labels: Tensor,
  g: Tensor | null,
): Tensor {
  const op = `attack_loss:${what}${g ? ":backward" : ""}`;
  const [n, k] = checkShapes(op, logits, labels, what);
  if (g && g.size !== n) throw new ShapeError(op, `gradient must be [${n}], got ${g}`);
  const kernel = gpu.kernel(`${op}:${n}:${k}`, () =>
    wgsl(template, {
      N: n,
      K: k,
      CE: what === "ce",
      DLR: what === "dlr",
      CORRECT: what === "correct",
      BACKWARD: g !== null,
    }));
  const out = gpu.empty(g ? [n, k] : [n]);
  gpu.dispatch(kernel, g ? [logits, labels, g, out] : [logits, labels, out], Math.ceil(n / 64));
  return out;
}

/** Per-sample loss [N] (raw op). */
export const attackLoss = (gpu: Gpu, logits: Tensor, labels: Tensor, kind: AttackLoss): Tensor =>
  run(gpu, kind, logits, labels, null);

/** d (sum_n g_n loss_n) / d logits [N, K] (raw op). */
export const attackLossBackward = (
  gpu: Gpu,
  logits: Tensor,
  labels: Tensor,
  g: Tensor,
  kind: AttackLoss,
): Tensor => run(gpu, kind, logits, labels, g);

/** 1.0 where the prediction (first maximum) equals the label, else 0.0: [N]. */
export const correctFlags = (gpu: Gpu, logits: Tensor, labels: Tensor): Tensor =>
  run(gpu, "correct", logits, labels, null);

/** Differentiable per-sample loss [N]; `backward(loss)` maximises nothing by itself: it gives
 * d (sum of the losses) / d inputs, which the attacks ascend. */
export function perSampleLoss(logits: Var, labels: Tensor, kind: AttackLoss): Var {
  const gpu = logits.gpu;
  const out = attackLoss(gpu, logits.value, labels, kind);
  return record(
    `${kind}_loss`,
    out,
    [logits],
    (g) => [attackLossBackward(gpu, logits.value, labels, g, kind)],
  );
}
