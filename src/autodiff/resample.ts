/** Differentiable nearest 2x upsampling and average pooling. */
import * as ops from "../ops/resample.ts";
import { record, type Var } from "./var.ts";

/** [N,C,H,W] -> [N,C,2H,2W], nearest neighbour. */
export function upsampleNearest2x(x: Var): Var {
  const gpu = x.gpu;
  return record("upsampleNearest2x", ops.upsampleNearest2x(gpu, x.value), [x], (g) => [
    ops.upsampleNearest2xBackward(gpu, g),
  ]);
}

/** Average pooling with kernel = stride = k: [N,C,H,W] -> [N,C,floor(H/k),floor(W/k)]. */
export function avgPool2d(x: Var, k = 2): Var {
  const gpu = x.gpu;
  const shape = x.shape;
  return record("avgPool2d", ops.avgPool2d(gpu, x.value, k), [x], (g) => [
    ops.avgPool2dBackward(gpu, g, shape, k),
  ]);
}
