/**
 * APGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
 * parameter-free attacks", ICML 2020), following the reference implementation (autoattack/autopgd_base.py,
 * attack_single_run) step for step, batched and entirely on the GPU:
 * - start at a random point on the eps-sphere (clipped to the box); step size 2 eps per image;
 * - z = P(x + eta sign(g)) (L2: g / ||g||), x' = P(x + a (z - x) + (1 - a)(x - x_prev)), a = 0.75 (1 at the
 *   first step);
 * - at the checkpoints (after 0.22 N iterations, then windows shrinking by 0.03 N down to 0.06 N) an image
 *   whose loss rose in at most rho = 75% of the window's steps, or whose step size was not reduced at the
 *   previous checkpoint and whose best loss did not improve since, gets eta / 2 and restarts from its
 *   best-loss point (with that point's gradient);
 * - the gradient of each iterate is summed over `eot` randomness draws (autoattack's eot_iter), the loss
 *   used for the best-loss bookkeeping is the mean over the draws (the reference uses the last draw's).
 * The result per image is the last misclassified iterate when there was one (AutoAttack's x_best_adv),
 * else the best-loss iterate (the reference returns the clean image there; for a randomised defense that
 * is re-evaluated afterwards, the best-loss point is the stronger choice).
 * Per-image state lives in [N] tensors updated by fused elementwise kernels; the checkpoint schedule
 * depends only on N, so nothing is read back.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32 } from "../gpu/template.ts";
import { keep, scope, type Tensor } from "../tensor.ts";
import { map } from "../ops/map.ts";
import { advanceCounter } from "../ops/random.ts";
import type { AttackLoss } from "./losses.ts";
import type { AttackModel } from "./model.ts";
import { lossGradient } from "./gradient.ts";
import { ascend, momentum, type Norm, perSample, randomStart } from "./projection.ts";
import { checkBudget } from "./pgd.ts";

export interface ApgdOptions {
  norm: Norm;
  eps: number;
  /** Iterations (autoattack's n_iter; the attack evaluates the gradient steps + 1 times). */
  steps: number;
  eot?: number;
  /** Default "ce". */
  loss?: AttackLoss;
  /** Runs from fresh random starts; later runs replace an image's result only where they do better. */
  restarts?: number;
  /** Default 0.75. */
  rho?: number;
  /** u32[4] Philox key of the random starts; its counter is advanced (on the GPU) after each start. */
  startKey: Tensor;
  onStep?: (step: number) => void | Promise<void>;
}

export interface ApgdResult {
  /** Adversarial examples [N, C, H, W]. */
  x: Tensor;
  /** 1.0 where some iterate was misclassified (by the draw it was evaluated with), else 0.0 [N]. */
  fooled: Tensor;
  /** The best mean loss reached per image [N]. */
  loss: Tensor;
}

/** One checkpoint: after iteration `at` (0-based), judging the last `window` iterations. */
export interface ApgdCheckpoint {
  at: number;
  window: number;
}

/** autoattack's schedule: windows of max(0.22 N, 1) iterations, each next one shorter by max(0.03 N, 1),
 * never below max(0.06 N, 1). */
export function apgdCheckpoints(steps: number): ApgdCheckpoint[] {
  const first = Math.max(Math.floor(0.22 * steps), 1);
  const min = Math.max(Math.floor(0.06 * steps), 1), decrease = Math.max(Math.floor(0.03 * steps), 1);
  const out: ApgdCheckpoint[] = [];
  for (let at = first - 1, k = first; at < steps;) {
    out.push({ at, window: k });
    k = Math.max(k - decrease, min);
    at += k;
  }
  return out;
}

/** In place: dst = select(dst, src, cond) elementwise, cond a WGSL expression over x2.. (per sample). */
function selectInto(gpu: Gpu, name: string, dst: Tensor, src: Tensor, cond: string, flags: Tensor[]): void {
  const like = dst.shape;
  map(gpu, name, `select(x0, x1, ${cond})`, [dst, src, ...flags.map((f) => perSample(f, like))], {
    inplace: true,
  });
}

async function singleRun(
  model: AttackModel,
  x0: Tensor,
  labels: Tensor,
  o: ApgdOptions,
): Promise<ApgdResult> {
  const gpu = x0.gpu, n = x0.shape[0];
  const eot = o.eot ?? 1, lossKind = o.loss ?? "ce", rho = o.rho ?? 0.75;
  const checks = new Map(apgdCheckpoints(o.steps).map((c) => [c.at, c.window]));
  const own = (t: Tensor) => keep(t);
  let x = own(randomStart(gpu, x0, o.norm, o.eps, o.startKey, "surface"));
  advanceCounter(gpu, o.startKey);
  let { grad, loss, correct } = lossGradient(model, x, labels, lossKind, eot);
  const copy = (t: Tensor) => {
    const c = own(gpu.empty(t.shape));
    gpu.copy(t, c);
    return c;
  };
  const xBest = copy(x), xBestAdv = copy(x), gradBest = copy(grad), lossBest = copy(loss), acc = correct;
  loss.dispose();
  const stepSize = own(gpu.empty([n]));
  gpu.fill(stepSize, 2 * o.eps);
  const lossBestLastCheck = copy(lossBest);
  const reducedLastCheck = own(gpu.empty([n]));
  gpu.fill(reducedLastCheck, 1);
  const increases = own(gpu.zeros([n]));
  const prevLoss = own(gpu.zeros([n])); // the reference compares the first loss with a zero-filled entry
  let xOld: Tensor | null = null;

  for (let i = 0; i < o.steps; i++) {
    const a = i > 0 ? 0.75 : 1.0;
    const next = own(scope(() => {
      const z = ascend(gpu, x, grad, x0, o.norm, stepSize, o.eps);
      return momentum(gpu, x, z, xOld ?? x, x0, a, o.norm, o.eps);
    }));
    xOld?.dispose();
    xOld = x;
    x = next;
    grad.dispose();
    ({ grad, loss, correct } = lossGradient(model, x, labels, lossKind, eot));
    map(gpu, "apgd_acc", "min(x0, x1)", [acc, correct], { inplace: true });
    selectInto(gpu, "apgd_best_adv", xBestAdv, x, "x2 == 0.0", [correct]);
    selectInto(gpu, "apgd_best", xBest, x, "x2 > x3", [loss, lossBest]);
    selectInto(gpu, "apgd_grad_best", gradBest, grad, "x2 > x3", [loss, lossBest]);
    map(gpu, "apgd_loss_best", "select(x0, x1, x1 > x0)", [lossBest, loss], { inplace: true });
    map(gpu, "apgd_increases", "x0 + select(0.0, 1.0, x1 > x2)", [increases, loss, prevLoss], {
      inplace: true,
    });
    gpu.copy(loss, prevLoss);
    loss.dispose();
    correct.dispose();
    const window = checks.get(i);
    if (window !== undefined) {
      scope(() => {
        // reduce where the loss rose too rarely, or where nothing improved since an unreduced checkpoint
        const expr = `max(select(0.0, 1.0, x0 <= ${
          f32(window * rho)
        }), (1.0 - x1) * select(0.0, 1.0, x2 >= x3))`;
        const reduce = map(gpu, "apgd_reduce", expr, [
          increases,
          reducedLastCheck,
          lossBestLastCheck,
          lossBest,
        ]);
        gpu.copy(reduce, reducedLastCheck);
        gpu.copy(lossBest, lossBestLastCheck);
        map(gpu, "apgd_halve", "select(x0, 0.5 * x0, x1 > 0.0)", [stepSize, reduce], { inplace: true });
        selectInto(gpu, "apgd_restart", x, xBest, "x2 > 0.0", [reduce]);
        selectInto(gpu, "apgd_restart", grad, gradBest, "x2 > 0.0", [reduce]);
        gpu.fill(increases, 0);
      });
    }
    await gpu.sync(); // lets Deno reclaim what the step released; also keeps the host near the device
    await o.onStep?.(i);
  }
  // the last misclassified iterate where there was one, else the best-loss iterate
  selectInto(gpu, "apgd_result", xBest, xBestAdv, "x2 == 0.0", [acc]);
  const fooled = map(gpu, "apgd_fooled", "1.0 - x0", [acc]);
  for (const t of [x, xOld, grad, xBestAdv, gradBest, acc, stepSize, lossBestLastCheck]) t?.dispose();
  for (const t of [reducedLastCheck, increases, prevLoss]) t.dispose();
  return { x: xBest, fooled: keep(fooled), loss: lossBest };
}

/** Per image: keep `a` where it fooled; else take `b` where b fooled or (same kind of loss) did better. */
export function combineResults(a: ApgdResult, b: ApgdResult, compareLoss: boolean): ApgdResult {
  const gpu = a.x.gpu;
  // inputs: x0 a.loss, x1 a.fooled, x2 b.fooled, x3 b.loss
  const better = compareLoss ? "(x2 > 0.0 || x3 > x0)" : "x2 > 0.0";
  const takeB = keep(map(gpu, "apgd_take_b", `select(0.0, 1.0, x1 == 0.0 && ${better})`, [
    a.loss,
    a.fooled,
    b.fooled,
    b.loss,
  ]));
  selectInto(gpu, "apgd_combine", a.x, b.x, "x2 > 0.0", [takeB]);
  map(gpu, "apgd_combine_loss", "select(x0, x1, x2 > 0.0)", [a.loss, b.loss, takeB], { inplace: true });
  map(gpu, "apgd_combine_fooled", "max(x0, x1)", [a.fooled, b.fooled], { inplace: true });
  for (const t of [takeB, b.x, b.fooled, b.loss]) t.dispose();
  return a;
}

/** APGD with `restarts` runs (default 1). Returns tensors owned by the caller. */
export async function apgd(
  model: AttackModel,
  x0: Tensor,
  labels: Tensor,
  o: ApgdOptions,
): Promise<ApgdResult> {
  checkBudget("APGD", o);
  const restarts = o.restarts ?? 1;
  if (!(Number.isInteger(restarts) && restarts >= 1)) throw new RangeError(`APGD: restarts ${restarts}`);
  let result = await singleRun(model, x0, labels, o);
  for (let r = 1; r < restarts; r++) {
    result = combineResults(result, await singleRun(model, x0, labels, o), true);
  }
  return result;
}

export interface AutoAttackOptions {
  norm: Norm;
  eps: number;
  /** Iterations of each APGD run (default 100). */
  steps?: number;
  /** Default 20 (AutoAttack's "rand" version). */
  eot?: number;
  /** Default 1. */
  restarts?: number;
  startKey: Tensor;
  onStep?: (step: number) => void | Promise<void>;
}

/**
 * AutoAttack's "rand" version (for randomised defenses): APGD-CE, then APGD-DLR on the same images, each
 * with EOT 20 and one run; an image fooled by APGD-CE keeps that result. The DLR run is skipped when
 * APGD-CE fooled every image (one readback of the flags, at the end of the first attack).
 */
export async function autoAttackRand(
  model: AttackModel,
  x0: Tensor,
  labels: Tensor,
  o: AutoAttackOptions,
): Promise<ApgdResult> {
  const base = {
    norm: o.norm,
    eps: o.eps,
    steps: o.steps ?? 100,
    eot: o.eot ?? 20,
    restarts: o.restarts ?? 1,
  };
  const ce = await apgd(model, x0, labels, { ...base, loss: "ce", startKey: o.startKey, onStep: o.onStep });
  const flags = await x0.gpu.read(ce.fooled);
  if (flags.every((f) => f > 0)) return ce;
  const dlr = await apgd(model, x0, labels, { ...base, loss: "dlr", startKey: o.startKey, onStep: o.onStep });
  return combineResults(ce, dlr, false);
}
