/** Differentiable conv2d: the raw forward plus a backward closure calling the three gradient kernels. */
import * as ops from "../ops/conv2d.ts";
import { record, type Var } from "./var.ts";

export type { Conv2dOptions } from "../ops/conv2d.ts";

/** y = conv2d(x, w) + b on Vars: x [N,Cin,H,W], w [Cout,Cin,k,k], b [Cout] or null. */
export function conv2d(x: Var, w: Var, b: Var | null, opts: ops.Conv2dOptions = {}): Var {
  const gpu = x.gpu;
  const y = ops.conv2d(gpu, x.value, w.value, b ? b.value : null, opts);
  const inputs = b ? [x, w, b] : [x, w];
  return record("conv2d", y, inputs, (g) => {
    const grads = [
      x.requiresGrad ? ops.conv2dBackwardInput(gpu, g, w.value, x.shape, opts) : null,
      w.requiresGrad ? ops.conv2dBackwardWeight(gpu, x.value, g, w.shape, opts) : null,
    ];
    if (b) grads.push(b.requiresGrad ? ops.conv2dBackwardBias(gpu, g) : null);
    return grads;
  });
}
