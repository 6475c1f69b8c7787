/** Differentiable matrix products: `matmul` (batched, transposes, broadcast) and `linear`. */
import * as ops from "../ops/matmul.ts";
import { record, type Var } from "./var.ts";

export type { MatmulOptions } from "../ops/matmul.ts";

/** alpha op(a) op(b); see ops/matmul.ts for shapes. A broadcast operand's gradient is summed over the batch. */
export function matmul(a: Var, b: Var, opts: ops.MatmulOptions = {}): Var {
  const gpu = a.gpu;
  const y = ops.matmul(gpu, a.value, b.value, opts);
  return record("matmul", y, [a, b], (g) => {
    const { da, db } = ops.matmulBackward(gpu, g, a.value, b.value, opts, {
      a: a.requiresGrad,
      b: b.requiresGrad,
    });
    return [da, db];
  });
}

/** x [..., in] w^T + bias, with w [out, in] and bias [out] (PyTorch layout). */
export function linear(x: Var, w: Var, bias: Var | null): Var {
  const gpu = x.gpu;
  const y = ops.linear(gpu, x.value, w.value, bias?.value ?? null);
  const inputs = bias ? [x, w, bias] : [x, w];
  return record("linear", y, inputs, (g) => {
    const { dx, dw, dbias } = ops.linearBackward(gpu, g, x.value, w.value, {
      x: x.requiresGrad,
      w: w.requiresGrad,
      bias: bias?.requiresGrad ?? false,
    });
    return bias ? [dx, dw, dbias] : [dx, dw];
  });
}
