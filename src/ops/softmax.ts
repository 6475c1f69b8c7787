/**
 * Row-wise ops over the last axis from one template (shaders/softmax.wgsl): softmax, logSoftmax, their
 * backward passes, and cross-entropy with integer labels (mean and per sample) with its backward.
 * All are numerically stable (the row max is subtracted before exp).
 */
import type { Gpu } from "../gpu/context.ts";
import { wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/softmax.wgsl" with { type: "text" };

type Kind = "SOFTMAX" | "LOG_SOFTMAX" | "SOFTMAX_BWD" | "LOG_SOFTMAX_BWD" | "CE_FWD" | "CE_BWD" | "MEAN";
const ONLINE: readonly Kind[] = ["SOFTMAX", "LOG_SOFTMAX", "CE_FWD", "CE_BWD"];

/** "row": one invocation per row, no barriers (software adapters); "workgroup": a workgroup per row. */
export type SoftmaxVariant = "row" | "workgroup";
export interface SoftmaxOptions {
  /** Force a kernel variant (tests run both); default chosen by the adapter. */
  variant?: SoftmaxVariant;
}

function rowKernel(
  gpu: Gpu,
  kind: Kind,
  rows: number,
  cols: number,
  bindings: readonly Tensor[],
  opts: SoftmaxOptions & { perSample?: boolean } = {},
): void {
  const variant = opts.variant ?? (gpu.adapter.isSoftware ? "row" : "workgroup");
  const wgReduce = variant === "workgroup";
  const consts = {
    [kind]: true,
    ONLINE: ONLINE.includes(kind),
    PER_SAMPLE: opts.perSample ?? false,
    WG_REDUCE: wgReduce,
    // 8 = the SIMD width of llvmpipe: small row counts still spread over its threads
    WG: wgReduce ? 64 : 8,
    ROWS: rows,
    COLS: cols,
  };
  const key = "softmax:" + Object.entries(consts).map(([k, v]) => `${k}=${v}`).join(",");
  const kernel = gpu.kernel(key, () => wgsl(template, consts));
  gpu.dispatch(kernel, bindings, wgReduce ? rows : Math.ceil(rows / 8));
}

function lastAxis(op: string, x: Tensor): { rows: number; cols: number } {
  if (x.shape.length < 1 || x.dtype !== "f32") throw new ShapeError(op, `needs an f32 tensor, got ${x}`);
  const cols = x.shape[x.shape.length - 1];
  return { rows: x.size / cols, cols };
}

/** Gradients are matched by size only (the tape allows a seed of another shape with the same size). */
function sameSize(op: string, a: Tensor, b: Tensor): void {
  if (a.size !== b.size) throw new ShapeError(op, `sizes of [${a.shape}] and [${b.shape}] differ`);
}

/** softmax over the last axis. */
export function softmax(gpu: Gpu, x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  const { rows, cols } = lastAxis("softmax", x);
  const y = gpu.empty(x.shape);
  rowKernel(gpu, "SOFTMAX", rows, cols, [x, y], opts);
  return y;
}

/** log(softmax(x)) over the last axis, computed as x - max - log(sum exp(x - max)). */
export function logSoftmax(gpu: Gpu, x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  const { rows, cols } = lastAxis("logSoftmax", x);
  const y = gpu.empty(x.shape);
  rowKernel(gpu, "LOG_SOFTMAX", rows, cols, [x, y], opts);
  return y;
}

/** Gradient of softmax from its output y: dx = y * (dy - sum(dy * y)) per row. */
export function softmaxBackward(gpu: Gpu, y: Tensor, dy: Tensor, opts: SoftmaxOptions = {}): Tensor {
  const { rows, cols } = lastAxis("softmaxBackward", y);
  sameSize("softmaxBackward", y, dy);
  const dx = gpu.empty(y.shape);
  rowKernel(gpu, "SOFTMAX_BWD", rows, cols, [y, dy, dx], opts);
  return dx;
}

/** Gradient of logSoftmax from its output y: dx = dy - exp(y) * sum(dy) per row. */
export function logSoftmaxBackward(gpu: Gpu, y: Tensor, dy: Tensor, opts: SoftmaxOptions = {}): Tensor {
  const { rows, cols } = lastAxis("logSoftmaxBackward", y);
  sameSize("logSoftmaxBackward", y, dy);
  const dx = gpu.empty(y.shape);
  rowKernel(gpu, "LOG_SOFTMAX_BWD", rows, cols, [y, dy, dx], opts);
  return dx;
}

function checkLabels(op: string, logits: Tensor, labels: Tensor): { n: number; c: number } {
  if (logits.shape.length !== 2 || logits.dtype !== "f32") {
    throw new ShapeError(op, `logits must be f32 [N, C], got ${logits}`);
  }
  const [n, c] = logits.shape;
  if (labels.dtype !== "u32" || labels.size !== n) {
    throw new ShapeError(op, `labels must be u32 [${n}], got ${labels}`);
  }
  return { n, c };
}

/** Per-sample cross-entropy -log softmax(logits)[label]: logits [N, C], labels u32 [N] -> [N].
 * A label >= C gives NaN for that sample. */
export function crossEntropyPerSample(
  gpu: Gpu,
  logits: Tensor,
  labels: Tensor,
  opts: SoftmaxOptions = {},
): Tensor {
  const { n, c } = checkLabels("crossEntropy", logits, labels);
  const loss = gpu.empty([n]);
  rowKernel(gpu, "CE_FWD", n, c, [logits, labels, loss], opts);
  return loss;
}

/** Mean cross-entropy over the batch: logits [N, C], labels u32 [N] -> [1]. */
export function crossEntropy(gpu: Gpu, logits: Tensor, labels: Tensor, opts: SoftmaxOptions = {}): Tensor {
  const perSample = crossEntropyPerSample(gpu, logits, labels, opts);
  const mean = gpu.empty([1]);
  rowKernel(gpu, "MEAN", 1, perSample.size, [perSample, mean], opts);
  perSample.dispose();
  return mean;
}

/**
 * Gradient of cross-entropy w.r.t. the logits: (softmax(logits) - onehot(label)) * g, with g = g[0] / N
 * for the mean loss (g of shape [1]) or g[i] per sample (g of shape [N], `perSample`).
 */
export function crossEntropyBackward(
  gpu: Gpu,
  logits: Tensor,
  labels: Tensor,
  g: Tensor,
  perSample: boolean,
  opts: SoftmaxOptions = {},
): Tensor {
  const { n, c } = checkLabels("crossEntropyBackward", logits, labels);
  if (g.size !== (perSample ? n : 1)) {
    throw new ShapeError(
      "crossEntropyBackward",
      `upstream gradient [${g.shape}] for ${perSample ? n : 1} losses`,
    );
  }
  const dx = gpu.empty(logits.shape);
  rowKernel(gpu, "CE_BWD", n, c, [logits, labels, g, dx], { ...opts, perSample });
  return dx;
}
