/**
 * The objective the guided noise ascends, for one noise draw: the noised input x_t from (x0, eps, d), the
 * UNet's prediction, then either the guidance classifier's mean cross-entropy on the predicted clean image
 * mapped to [0, 1] (ADDT, ADDT_linf) or the MSE of the prediction against the fresh noise eps (the MSE-guided
 * ablation: train_ADDT_l2_loss_for_ablation.py compares with the unmixed noise). Gradients flow to d through
 * x_t and through the UNet; both networks enter with frozen weights, so no weight gradient is computed (the
 * authors discard them before the training step anyway).
 *
 * Dropout: the authors run these passes with the UNet in train mode (model.train() for the whole epoch) and
 * the classifier in eval mode, so `dropout` defaults to on, with its own sites per pass; the classifier is
 * always evaluated without dropout.
 */
import type { Gpu } from "../gpu/context.ts";
import type { Tensor } from "../tensor.ts";
import { constant, type Var } from "../autodiff/var.ts";
import { crossEntropy } from "../autodiff/softmax.ts";
import type { ParamStore } from "../nn/params.ts";
import { type UNetConfig, unetForward } from "../nn/unet.ts";
import type { Classifier } from "../defense/networks.ts";
import { mse } from "../train/losses.ts";
import { noisedInput, x0HatUnit } from "./lambda.ts";

export type Objective = "classifier" | "mse";

/** What one guidance pass needs: the batch, its timesteps and coefficient rows, the networks, the key. */
export interface Guidance {
  gpu: Gpu;
  model: ParamStore;
  config: UNetConfig;
  /** Clean images [N, C, H, W] in [-1, 1] and their u32 labels [N]. */
  x0: Tensor;
  labels: Tensor;
  /** f32 timesteps [N] and their mixing coefficients [N, 4] (lambda.ts). */
  t: Tensor;
  coefs: Tensor;
  /** The step's Philox key. */
  key: Tensor;
  objective: Objective;
  /** Logits of [0, 1] images, frozen (required by the "classifier" objective). */
  classifier: Classifier | null;
  /** Dropout in the UNet passes (default on, as the authors' code). */
  dropout: boolean;
}

/** The objective at guided noise d (a Var to differentiate) and noise draw eps: a [1] loss. */
export function guidanceLoss(g: Guidance, d: Var, eps: Tensor, dropoutSite: number): Var {
  const xt = noisedInput(g.gpu, g.x0, eps, d, g.coefs);
  const pred = unetForward(g.model, g.config, xt, g.t, {
    train: g.dropout,
    rngKey: g.key,
    siteBase: dropoutSite,
    frozen: true,
  });
  if (g.objective === "mse") return mse(pred, constant(eps));
  if (!g.classifier) throw new Error("guidanceLoss: the classifier objective needs a classifier");
  return crossEntropy(g.classifier(x0HatUnit(xt, pred, g.coefs)), g.labels);
}
