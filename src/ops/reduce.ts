/**
 * Reductions (sum, mean, max) over any set of axes, per-sample norms, and their backward kernels.
 *
 * Every reduction is one kernel family (shaders/reduce.wgsl): the input is viewed as O outputs times R
 * reduced elements with generated offset expressions, so trailing axes (per-sample), leading axes and
 * NCHW per-channel (axes 0, 2, 3) are all the same kernel. No barriers: each invocation combines a chunk
 * of at most CHUNK elements serially, and further passes combine the partials, so a float32 sum of n
 * elements is a tree of serial sums of <= CHUNK (accurate to ~1e-6 relative for random data).
 */
import type { Gpu } from "../gpu/context.ts";
import { f32, wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import { broadcastIndex, indexExpr, type IndexTerm, map } from "./map.ts";
import template from "../../shaders/reduce.wgsl" with { type: "text" };

/** Elements one invocation combines serially: long enough to amortise the loop, short enough for float
 * accuracy and for enough invocations on small outputs. */
const CHUNK = 256;

export interface ReduceOptions {
  /** Keep reduced axes as size 1 (default: drop them; reducing every axis gives shape [1]). */
  keepDims?: boolean;
  /** Give the result this shape instead (same size), e.g. a broadcast operand's shape for its gradient. */
  shape?: readonly number[];
}

/** Sum over `axes` (default: all). Negative axes count from the end. */
export function sum(
  gpu: Gpu,
  x: Tensor,
  axes?: number | readonly number[],
  opts: ReduceOptions = {},
): Tensor {
  const red = normaliseAxes("sum", x.shape, axes);
  return reduce(gpu, "sum", x, red, { kind: "sum" }, outShape("sum", x.shape, red, opts));
}

/** Mean over `axes` (default: all). */
export function mean(
  gpu: Gpu,
  x: Tensor,
  axes?: number | readonly number[],
  opts: ReduceOptions = {},
): Tensor {
  const red = normaliseAxes("mean", x.shape, axes);
  const count = red.reduce((n, d) => n * x.shape[d], 1);
  const post = `acc * ${f32(1 / count)}`;
  return reduce(gpu, "mean", x, red, { kind: "sum", post }, outShape("mean", x.shape, red, opts));
}

/** Gradient of `sum`/`mean`: g (the reduced shape, any keepDims) broadcast back to `shape`, times scale. */
export function sumBackward(
  gpu: Gpu,
  g: Tensor,
  shape: readonly number[],
  axes?: number | readonly number[],
  scale = 1,
): Tensor {
  const red = normaliseAxes("sum_backward", shape, axes);
  const kept = shape.map((n, d) => red.includes(d) ? 1 : n);
  if (g.size !== kept.reduce((a, b) => a * b, 1)) {
    throw new ShapeError("sum_backward", `gradient [${g.shape}] does not match [${kept}]`);
  }
  const expr = scale === 1 ? "x0" : `x0 * ${f32(scale)}`;
  return map(gpu, "sum_backward", expr, [{ t: g, index: broadcastIndex(kept, shape) }], { shape });
}

// ---------------------------------------------------------------- per-sample norms

const sampleAxes = (shape: readonly number[]) => shape.map((_, d) => d).slice(1);

/** sqrt(sum of squares) over all axes but the first: [N, ...] -> [N]. */
export function normL2PerSample(gpu: Gpu, x: Tensor): Tensor {
  const spec = { kind: "sum" as const, pre: "v * v", post: "sqrt(acc)" };
  return reduce(gpu, "norm_l2", x, sampleAxes(x.shape), spec, [x.shape[0]]);
}

/** max |x| over all axes but the first: [N, ...] -> [N]. */
export function normLinfPerSample(gpu: Gpu, x: Tensor): Tensor {
  return reduce(gpu, "norm_linf", x, sampleAxes(x.shape), { kind: "max", pre: "abs(v)" }, [x.shape[0]]);
}

/** d||x||_2 / dx = x / ||x|| per sample, times g[n]; 0 for an all-zero sample (a valid subgradient). */
export function normL2PerSampleBackward(gpu: Gpu, x: Tensor, y: Tensor, g: Tensor): Tensor {
  const perSample = broadcastIndex([x.shape[0], ...sampleAxes(x.shape).map(() => 1)], x.shape);
  return map(gpu, "norm_l2_backward", "select(0.0, x1 * x0 / x2, x2 > 0.0)", [
    x,
    { t: g, index: perSample },
    { t: y, index: perSample },
  ]);
}

/**
 * Subgradient of max |x| per sample: g[n] * sign(x) / k on the k elements where |x| equals the max, 0
 * elsewhere (ties share the gradient equally, like PyTorch's amax; the result is a convex combination,
 * so a true subgradient). An all-zero sample gets 0.
 */
export function normLinfPerSampleBackward(gpu: Gpu, x: Tensor, y: Tensor, g: Tensor): Tensor {
  const ties = reduce(gpu, "norm_linf_ties", x, sampleAxes(x.shape), {
    kind: "sum",
    pre: "select(0.0, 1.0, abs(v) == a)",
    aux: y,
  }, [x.shape[0]]);
  const perSample = broadcastIndex([x.shape[0], ...sampleAxes(x.shape).map(() => 1)], x.shape);
  const out = map(gpu, "norm_linf_backward", "select(0.0, x1 * sign(x0) / x3, abs(x0) == x2)", [
    x,
    { t: g, index: perSample },
    { t: y, index: perSample },
    { t: ties, index: perSample },
  ]);
  ties.dispose();
  return out;
}

// ---------------------------------------------------------------- the reduction engine

export interface ReduceSpec {
  kind: "sum" | "max";
  /** WGSL f32 expression of the element `v` (and `a`, the aux value of its output); default `v`. */
  pre?: string;
  /** WGSL f32 expression of the result `acc`; default `acc`. */
  post?: string;
  /** A per-output input read as `a` in `pre` (size O). */
  aux?: Tensor;
}

/** Axes as a sorted list of distinct non-negative dims; `undefined` means all. */
export function normaliseAxes(
  op: string,
  shape: readonly number[],
  axes?: number | readonly number[],
): number[] {
  if (axes === undefined) return shape.map((_, d) => d);
  const list = typeof axes === "number" ? [axes] : axes;
  const out = list.map((a) => (a < 0 ? a + shape.length : a));
  for (const [k, a] of out.entries()) {
    if (!Number.isInteger(a) || a < 0 || a >= shape.length) {
      throw new ShapeError(op, `axis ${list[k]} out of range for shape [${shape}]`);
    }
    if (out.indexOf(a) !== k) throw new ShapeError(op, `axis ${list[k]} repeated`);
  }
  return out.sort((a, b) => a - b);
}

function outShape(op: string, shape: readonly number[], red: readonly number[], opts: ReduceOptions) {
  const kept = shape.map((n, d) => (red.includes(d) ? 1 : n));
  const natural = opts.keepDims ? kept : shape.filter((_, d) => !red.includes(d));
  const result = opts.shape ?? (natural.length ? natural : [1]);
  const size = kept.reduce((a, b) => a * b, 1);
  if (result.reduce((a, b) => a * b, 1) !== size) {
    throw new ShapeError(op, `output shape [${result}] does not hold the ${size} results`);
  }
  return result;
}

/** The [O, R] view of `shape` reduced over `red`: offset expressions for o and r, and whether the
 * innermost input axis is kept (then neighbouring outputs are neighbouring addresses). */
function plan(shape: readonly number[], red: readonly number[]) {
  const keptTerms: IndexTerm[] = [], redTerms: IndexTerm[] = [];
  let stride = 1, keptStride = 1, redStride = 1;
  let last: "kept" | "red" | null = null;
  let innerKept: boolean | null = null;
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d];
    if (n === 1) continue; // size-1 axes change no offset and do not break a group
    const kind = red.includes(d) ? "red" : "kept";
    innerKept ??= kind === "kept";
    const terms = kind === "kept" ? keptTerms : redTerms;
    if (kind === last) terms[terms.length - 1].mod *= n;
    else terms.push({ div: kind === "kept" ? keptStride : redStride, mod: n, mul: stride });
    if (kind === "kept") keptStride *= n;
    else redStride *= n;
    stride *= n;
    last = kind;
  }
  return { O: keptStride, R: redStride, keptTerms, redTerms, oFast: innerKept === true };
}

/** Run the passes of a reduction of `x` over the dims `red`, writing a tensor of `shape` (size O). */
export function reduce(
  gpu: Gpu,
  name: string,
  x: Tensor,
  red: readonly number[],
  spec: ReduceSpec,
  shape: readonly number[],
  strided = !gpu.adapter.isSoftware,
): Tensor {
  let { O, R, keptTerms, redTerms, oFast } = plan(x.shape, red);
  if (spec.aux && spec.aux.size !== O) {
    throw new ShapeError(name, `aux of shape [${spec.aux.shape}] for ${O} outputs`);
  }
  let input = x;
  for (let pass = 0;; pass++) {
    const P = Math.ceil(R / CHUNK);
    const last = P === 1;
    const consts = {
      O,
      R,
      P,
      CHUNK,
      OUT_OFFSET: indexExpr("o", keptTerms, O),
      RED_OFFSET: indexExpr("r", redTerms, R),
      PRE: pass === 0 ? spec.pre ?? "v" : "v",
      POST: last ? spec.post ?? "acc" : "acc",
      COMBINE: spec.kind === "sum" ? "acc + v" : "max(acc, v)",
      INIT: spec.kind === "sum" ? "0.0" : "bitcast<f32>(0xff7fffffu)", // -FLT_MAX
      AUX: pass === 0 && spec.aux !== undefined,
      STRIDED: strided && P > 1,
      O_FAST: oFast && O > 1,
    };
    const key = `reduce:${Object.values(consts).join(":")}`;
    const kernel = gpu.kernel(key, () => wgsl(template, consts));
    const out = gpu.empty(last ? shape : [O * P]);
    gpu.dispatch(kernel, consts.AUX ? [input, spec.aux!, out] : [input, out], Math.ceil((O * P) / 64));
    if (input !== x) input.dispose();
    if (last) return out;
    // the partials are an [O, P] row-major tensor: reduce its trailing axis next
    input = out;
    R = P;
    keptTerms = [{ div: 1, mod: O, mul: P }];
    redTerms = [{ div: 1, mod: P, mul: 1 }];
    oFast = false;
  }
}
