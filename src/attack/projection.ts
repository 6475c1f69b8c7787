/**
 * The attacks' update rules as fused elementwise kernels (ops/map.ts) and per-sample norms: an ascent step
 * (sign step for Linf, per-sample normalised gradient for L2), the projection onto the eps-ball around the
 * clean image and the box [0, 1], and random starts. Step sizes are a number baked into the kernel or a
 * per-sample [N] tensor (APGD halves them per image). Everything stays on the GPU.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32 } from "../gpu/template.ts";
import { scope, type Tensor } from "../tensor.ts";
import { broadcastIndex, map, type MapInput } from "../ops/map.ts";
import { normL2PerSample, normLinfPerSample } from "../ops/reduce.ts";
import { normal, uniform } from "../ops/random.ts";

export type Norm = "linf" | "l2";

/** Added to a gradient norm before dividing (torchattacks' eps_for_division). */
const DIV_EPS = 1e-10;

/** A per-sample [N] tensor read against [N, ...]. */
export function perSample(t: Tensor, like: readonly number[]): MapInput {
  return { t, index: broadcastIndex([like[0], ...like.slice(1).map(() => 1)], like) };
}

/** A step size: a baked constant, or the per-sample tensor bound as input `slot`. */
function stepOperand(step: number | Tensor, slot: number, like: readonly number[]): [string, MapInput[]] {
  if (typeof step === "number") return [`(${f32(step)})`, []];
  return [`x${slot}`, [perSample(step, like)]];
}

/** clamp(v, x0 - eps, x0 + eps) then the box, as WGSL over named operands. */
const linfProject = (v: string, clean: string, eps: number) =>
  `clamp(clamp(${v}, ${clean} - ${f32(eps)}, ${clean} + ${f32(eps)}), 0.0, 1.0)`;

/** v projected onto the L2 ball of radius eps around x0 (per sample), then onto the box [0, 1]. The box
 * after the ball keeps the ball: clamping moves each coordinate towards x0's, which is inside the box. */
export function projectL2(gpu: Gpu, v: Tensor, x0: Tensor, eps: number): Tensor {
  return scope(() => {
    const d = map(gpu, "attack_delta", "x0 - x1", [v, x0]);
    const n = normL2PerSample(gpu, d);
    const expr = `clamp(x1 + x0 * min(1.0, ${f32(eps)} / max(x2, 1e-12)), 0.0, 1.0)`;
    return map(gpu, "attack_project_l2", expr, [d, x0, perSample(n, v.shape)]);
  });
}

/** The projection for either norm (Linf: coordinatewise clamp). */
export function project(gpu: Gpu, v: Tensor, x0: Tensor, norm: Norm, eps: number): Tensor {
  if (norm === "l2") return projectL2(gpu, v, x0, eps);
  return map(gpu, "attack_project_linf", linfProject("x0", "x1", eps), [v, x0]);
}

/**
 * One ascent step from x along the gradient g, projected: Linf x + step sign(g); L2 x + step g / ||g||
 * (per sample). The result lies in the eps-ball around x0 and in [0, 1].
 */
export function ascend(
  gpu: Gpu,
  x: Tensor,
  g: Tensor,
  x0: Tensor,
  norm: Norm,
  step: number | Tensor,
  eps: number,
): Tensor {
  return scope(() => {
    if (norm === "linf") {
      const [s, extra] = stepOperand(step, 3, x.shape);
      return map(gpu, "attack_step_linf", linfProject(`x0 + ${s} * sign(x1)`, "x2", eps), [
        x,
        g,
        x0,
        ...extra,
      ]);
    }
    const gn = normL2PerSample(gpu, g);
    const [s, extra] = stepOperand(step, 3, x.shape);
    const moved = map(gpu, "attack_step_l2", `x0 + ${s} * x1 / (x2 + ${f32(DIV_EPS)})`, [
      x,
      g,
      perSample(gn, x.shape),
      ...extra,
    ]);
    return projectL2(gpu, moved, x0, eps);
  });
}

/** APGD's momentum: x + a (z - x) + (1 - a) (x - xOld), projected (Croce & Hein 2020, eq. (3)). */
export function momentum(
  gpu: Gpu,
  x: Tensor,
  z: Tensor,
  xOld: Tensor,
  x0: Tensor,
  a: number,
  norm: Norm,
  eps: number,
) {
  const expr = `x0 + ${f32(a)} * (x1 - x0) + ${f32(1 - a)} * (x0 - x2)`;
  if (norm === "linf") return map(gpu, "apgd_momentum_linf", linfProject(expr, "x3", eps), [x, z, xOld, x0]);
  return scope(() => projectL2(gpu, map(gpu, "apgd_momentum", expr, [x, z, xOld]), x0, eps));
}

/**
 * A random point of the eps-ball around x0, clipped to the box, drawn from `key`.
 * "uniform" (torchattacks' PGD): Linf uniform in [-eps, eps] per pixel; L2 a uniform direction times
 * eps r, r ~ U[0, 1] per sample. "surface" (AutoAttack's APGD): Linf eps t / max|t|, t ~ U[-1, 1]; L2
 * eps t / ||t||, t ~ N(0, 1): a point on the sphere.
 */
export function randomStart(
  gpu: Gpu,
  x0: Tensor,
  norm: Norm,
  eps: number,
  key: Tensor,
  style: "uniform" | "surface",
): Tensor {
  const e = f32(eps);
  return scope(() => {
    if (norm === "linf") {
      const u = uniform(gpu, x0.shape, key, 0);
      if (style === "uniform") {
        return map(gpu, "start_linf_uniform", `clamp(x0 + ${e} * (2.0 * x1 - 1.0), 0.0, 1.0)`, [x0, u]);
      }
      const t = map(gpu, "start_centre", "2.0 * x0 - 1.0", [u]);
      const m = normLinfPerSample(gpu, t);
      const expr = `clamp(x0 + ${e} * x1 / max(x2, 1e-12), 0.0, 1.0)`;
      return map(gpu, "start_linf_surface", expr, [x0, t, perSample(m, x0.shape)]);
    }
    const t = normal(gpu, x0.shape, key, 1);
    const n = normL2PerSample(gpu, t);
    if (style === "surface") {
      const expr = `clamp(x0 + ${e} * x1 / max(x2, 1e-12), 0.0, 1.0)`;
      return map(gpu, "start_l2_surface", expr, [x0, t, perSample(n, x0.shape)]);
    }
    const r = uniform(gpu, [x0.shape[0]], key, 2);
    const expr = `clamp(x0 + ${e} * x3 * x1 / max(x2, 1e-12), 0.0, 1.0)`;
    return map(gpu, "start_l2_uniform", expr, [x0, t, perSample(n, x0.shape), perSample(r, x0.shape)]);
  });
}
