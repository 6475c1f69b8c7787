/**
 * Training losses that are not layers: the epsilon-prediction MSE of DDPM (torch's F.mse_loss with the
 * default mean reduction). Forward is one elementwise difference and one reduction of its squares; the
 * backward reuses the difference, so it is one elementwise kernel.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32 } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import { map } from "../ops/map.ts";
import { normaliseAxes, reduce } from "../ops/reduce.ts";
import { record, type Var } from "../autodiff/var.ts";

/** mean((pred - target)^2) as [1], and the difference the backward needs. */
export function mseRaw(gpu: Gpu, pred: Tensor, target: Tensor): { loss: Tensor; diff: Tensor } {
  if (pred.shape.join() !== target.shape.join()) {
    throw new ShapeError("mse", `prediction [${pred.shape}] and target [${target.shape}] differ`);
  }
  const diff = map(gpu, "mse_diff", "x0 - x1", [pred, target]);
  const all = normaliseAxes("mse", diff.shape);
  const loss = reduce(gpu, "mse", diff, all, {
    kind: "sum",
    pre: "v * v",
    post: `acc * ${f32(1 / diff.size)}`,
  }, [
    1,
  ]);
  return { loss, diff };
}

/** d loss / d pred = g * 2 (pred - target) / n, g the [1] incoming gradient (d / d target is its negative). */
export function mseBackward(gpu: Gpu, diff: Tensor, g: Tensor, negate = false): Tensor {
  const scale = (negate ? -2 : 2) / diff.size;
  return map(gpu, "mse_backward", `x1 * ${f32(scale)} * x0`, [diff, { t: g, index: "0u" }]);
}

/** Differentiable mean squared error, [1]. */
export function mse(pred: Var, target: Var): Var {
  const gpu = pred.gpu;
  const { loss, diff } = mseRaw(gpu, pred.value, target.value);
  return record("mse", loss, [pred, target], (g) => [
    pred.requiresGrad ? mseBackward(gpu, diff, g) : null,
    target.requiresGrad ? mseBackward(gpu, diff, g, true) : null,
  ]);
}
