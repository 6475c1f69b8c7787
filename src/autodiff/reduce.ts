/**
 * Differentiable reductions on Vars: sum and mean over axes, per-sample L2 and Linf norms.
 * See ops/reduce.ts for the kernels and the subgradient choices (L2 at 0: 0; Linf: ties share equally).
 */
import * as ops from "../ops/reduce.ts";
import { record, type Var } from "./var.ts";

/** Sum over `axes` (default: all, giving shape [1]). */
export function sum(x: Var, axes?: number | readonly number[], opts: ops.ReduceOptions = {}): Var {
  const gpu = x.gpu;
  const y = ops.sum(gpu, x.value, axes, opts);
  return record("sum", y, [x], (g) => [ops.sumBackward(gpu, g, x.shape, axes)]);
}

/** Mean over `axes` (default: all, giving shape [1]). */
export function mean(x: Var, axes?: number | readonly number[], opts: ops.ReduceOptions = {}): Var {
  const gpu = x.gpu;
  const y = ops.mean(gpu, x.value, axes, opts);
  const count = x.value.size / y.size;
  return record("mean", y, [x], (g) => [ops.sumBackward(gpu, g, x.shape, axes, 1 / count)]);
}

/** Per-sample Euclidean norm: [N, ...] -> [N]. */
export function normL2PerSample(x: Var): Var {
  const gpu = x.gpu;
  const y = ops.normL2PerSample(gpu, x.value);
  return record("norm_l2", y, [x], (g) => [ops.normL2PerSampleBackward(gpu, x.value, y, g)]);
}

/** Per-sample max-abs norm: [N, ...] -> [N]. */
export function normLinfPerSample(x: Var): Var {
  const gpu = x.gpu;
  const y = ops.normLinfPerSample(gpu, x.value);
  return record("norm_linf", y, [x], (g) => [ops.normLinfPerSampleBackward(gpu, x.value, y, g)]);
}
