/**
 * FGSM and PGD (Madry et al. 2018) with torchattacks' parameters and update rules: Linf steps of
 * alpha sign(grad), L2 steps of alpha grad / ||grad|| per sample; after each step the projection onto the
 * eps-ball around the clean image and onto the box [0, 1]. No random start by default (the paper's
 * setting). The gradient of each step is summed over `eot` randomness draws (EOT). A whole batch is
 * attacked at once and every step stays on the GPU: no readback until the caller reads the result.
 */
import type { Tensor } from "../tensor.ts";
import { keep, scope } from "../tensor.ts";
import { advanceCounter } from "../ops/random.ts";
import type { AttackLoss } from "./losses.ts";
import type { AttackModel } from "./model.ts";
import { lossGradient } from "./gradient.ts";
import { ascend, type Norm, randomStart } from "./projection.ts";

export interface PgdOptions {
  norm: Norm;
  eps: number;
  /** Step size. */
  alpha: number;
  steps: number;
  /** Gradient draws summed per step (default 1). */
  eot?: number;
  /** Start from a random point of the ball (default false); needs `startKey`. */
  randomStart?: boolean;
  /** u32[4] Philox key of the random start (ops/random.ts rngKey); its counter is advanced after use. */
  startKey?: Tensor;
  /** Default "ce". */
  loss?: AttackLoss;
  /** Called after each step is recorded (progress, or awaiting the device so memory is reclaimed). */
  onStep?: (step: number) => void | Promise<void>;
}

export function checkBudget(what: string, o: { eps: number; steps: number; alpha?: number }): void {
  if (!(o.eps >= 0 && Number.isFinite(o.eps))) throw new RangeError(`${what}: eps ${o.eps} must be >= 0`);
  if (!(Number.isInteger(o.steps) && o.steps >= 0)) throw new RangeError(`${what}: steps ${o.steps}`);
  if (o.alpha !== undefined && !(o.alpha >= 0 && Number.isFinite(o.alpha))) {
    throw new RangeError(`${what}: alpha ${o.alpha} must be >= 0`);
  }
}

/** Copy of x in the caller's ownership. */
function clone(x: Tensor): Tensor {
  const c = x.gpu.empty(x.shape);
  x.gpu.copy(x, c);
  return c;
}

/** The adversarial examples [N, C, H, W] for images x0 in [0, 1] with labels (u32 [N]). */
export async function pgd(model: AttackModel, x0: Tensor, labels: Tensor, opts: PgdOptions): Promise<Tensor> {
  checkBudget("PGD", opts);
  const gpu = x0.gpu;
  const eot = opts.eot ?? 1;
  let x: Tensor;
  if (opts.randomStart) {
    if (!opts.startKey) throw new Error("PGD: a random start needs startKey");
    x = keep(randomStart(gpu, x0, opts.norm, opts.eps, opts.startKey, "uniform"));
    advanceCounter(gpu, opts.startKey);
  } else x = keep(clone(x0));
  for (let s = 0; s < opts.steps; s++) {
    const { grad, loss, correct } = lossGradient(model, x, labels, opts.loss ?? "ce", eot);
    loss.dispose();
    correct.dispose();
    const next = keep(scope(() => ascend(gpu, x, grad, x0, opts.norm, opts.alpha, opts.eps)));
    grad.dispose();
    x.dispose();
    x = next;
    await gpu.sync(); // lets Deno reclaim what the step released; also keeps the host near the device
    await opts.onStep?.(s);
  }
  return x;
}

/** FGSM (Goodfellow et al. 2015): one step of size eps (for Linf: x + eps sign(grad), then the box). */
export function fgsm(
  model: AttackModel,
  x0: Tensor,
  labels: Tensor,
  opts: { norm?: Norm; eps: number; eot?: number; loss?: AttackLoss },
): Promise<Tensor> {
  const { eps, eot, loss } = opts;
  return pgd(model, x0, labels, { norm: opts.norm ?? "linf", eps, alpha: eps, steps: 1, eot, loss });
}
