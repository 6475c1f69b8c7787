/**
 * CGPO, ADDT's classifier-guided perturbation optimisation (the authors' train_ADDT.py):
 *
 *   eps_d = N(0, I); acc = 0
 *   repeat K times:
 *     eps = N(0, I) fresh;  L = objective(eps_d, eps)   (objective.ts)
 *     acc += dL / d eps_d;  eps_d = RBGM(acc)
 *
 * There is no step size and no eps-ball: each iteration keeps only the ordering of the accumulated gradient
 * within each (image, channel) and maps it onto a fresh Gaussian sample, so eps_d stays exactly N(0, I)
 * distributed. The accumulator is never reset within the K iterations. Everything stays on the GPU; each
 * pass runs in its own tensor scope, so K passes hold one pass's activations at a time.
 */
import { scope, type Tensor } from "../tensor.ts";
import { addInPlace } from "../ops/map.ts";
import { normal } from "../ops/random.ts";
import { backward, leaf } from "../autodiff/var.ts";
import { type Guidance, guidanceLoss } from "./objective.ts";
import { rbgm } from "./rbgm.ts";
import { passSites, SITE_EPS_D } from "./draws.ts";

/** The guided noise eps_d [N, C, H, W] after `steps` CGPO iterations (dispatches only, no readback). */
export function cgpo(g: Guidance, steps: number): Tensor {
  const { gpu, x0, key } = g;
  let epsD = normal(gpu, x0.shape, key, SITE_EPS_D);
  const acc = gpu.zeros(x0.shape);
  for (let k = 0; k < steps; k++) {
    const sites = passSites(k);
    const next = scope(() => {
      const eps = normal(gpu, x0.shape, key, sites.noise);
      const d = leaf(epsD);
      backward(guidanceLoss(g, d, eps, sites.dropout));
      addInPlace(gpu, acc, d.grad!);
      d.grad!.dispose(); // leaf gradients live outside scopes
      return rbgm(gpu, acc, key, sites.rbgm);
    });
    epsD.dispose();
    epsD = next;
  }
  acc.dispose();
  return epsD;
}
