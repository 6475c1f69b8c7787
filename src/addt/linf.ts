/**
 * ADDT_linf, the pixel-space ablation (the authors' train_ADDT_linf.py): a PGD perturbation delta of the
 * same classifier objective, starting at 0, K sign steps of size alpha, each followed by the projection onto
 * the Linf ball of radius eps and onto valid images (x0 + delta in [-1, 1]); a fresh noise draw per step and
 * no accumulation across steps. delta lives in the diffusion model's [-1, 1] units: an attack budget of e in
 * the classifier's [0, 1] pixel units is 2 e here (the authors' (8/255) / 0.5). It enters the noise as
 * eps + clip(sqrt(abar) / sqrt(1 - abar), 0, 10) delta (lambda.ts, kind "linf").
 */
import { scope, type Tensor } from "../tensor.ts";
import { f32 } from "../gpu/template.ts";
import { map } from "../ops/map.ts";
import { normal } from "../ops/random.ts";
import { backward, leaf } from "../autodiff/var.ts";
import { type Guidance, guidanceLoss } from "./objective.ts";
import { passSites } from "./draws.ts";

/** The perturbation delta [N, C, H, W] after `steps` PGD steps; eps and alpha in [-1, 1] units. */
export function linfPerturbation(g: Guidance, steps: number, eps: number, alpha: number): Tensor {
  const { gpu, x0, key } = g;
  const step = `clamp(clamp(x0 + ${f32(alpha)} * sign(x1), ${f32(-eps)}, ${f32(eps)}), -1.0 - x2, 1.0 - x2)`;
  let delta = gpu.zeros(x0.shape);
  for (let k = 0; k < steps; k++) {
    const sites = passSites(k);
    const next = scope(() => {
      const noise = normal(gpu, x0.shape, key, sites.noise);
      const d = leaf(delta);
      backward(guidanceLoss(g, d, noise, sites.dropout));
      const out = map(gpu, "addt_linf_step", step, [delta, d.grad!, x0]);
      d.grad!.dispose(); // leaf gradients live outside scopes
      return out;
    });
    delta.dispose();
    delta = next;
  }
  return delta;
}
