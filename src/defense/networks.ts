/**
 * The defended model's networks with frozen weights: the attacks need d loss / d input only, but a
 * ParamStore's parameters are leaves that require gradients, so a plain forward would also compute (and
 * accumulate) every weight gradient in each backward pass, roughly half the backward work for nothing.
 * `FrozenOps` runs the same architecture walks with the weights as constants instead.
 * (A `frozen` flag in nn/layers.ts ForwardOptions would make this file unnecessary.)
 */
import { constant, type Var } from "../autodiff/var.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import { VarOps } from "../nn/layers.ts";
import type { ParamStore } from "../nn/params.ts";
import { cnnWalk } from "../nn/classifier.ts";
import { wrnWalk } from "../nn/wideresnet.ts";
import { timestepEmbedding, type UNetConfig, unetWalk } from "../nn/unet.ts";
import type { ClassifierModel } from "../train/models.ts";
import type { EpsModel } from "../diffusion/sampler.ts";

/** Logits [N, classes] of images x [N, C, H, W] in [0, 1]. */
export type Classifier = (x: Var) => Var;

/** Evaluation-mode walk (no dropout) whose parameters are constants: no weight gradients. */
class FrozenOps extends VarOps {
  private readonly frozen = new Map<string, Var>();

  override param(name: string, shape: readonly number[]): Var {
    const v = super.param(name, shape);
    let c = this.frozen.get(name);
    if (!c) this.frozen.set(name, c = constant(v.value, name));
    return c;
  }
}

/** The classifier of a ParamStore (CNN or Wide ResNet) with frozen weights. */
export function frozenClassifier(store: ParamStore, model: ClassifierModel): Classifier {
  const cfg = model.config;
  return (x: Var) => {
    if (x.shape.length !== 4 || x.shape[1] !== cfg.in_channels || x.shape[2] !== cfg.image_size) {
      throw new ShapeError("classifier", `input must be [N, ${cfg.in_channels}, ${cfg.image_size}, ...]`);
    }
    const L = new FrozenOps(store);
    return model.arch === "cnn" ? cnnWalk(L, model.config, x) : wrnWalk(L, model.config, x);
  };
}

/** The DDPM UNet of a ParamStore as an eps-model with frozen weights (evaluation mode). */
export function frozenEpsModel(store: ParamStore, cfg: UNetConfig): EpsModel {
  return (x: Var, t: Tensor) => {
    if (x.shape.length !== 4 || x.shape[1] !== cfg.in_channels) {
      throw new ShapeError("unet", `input must be [N, ${cfg.in_channels}, H, W], got [${x.shape}]`);
    }
    const c0 = cfg.block_out_channels[0];
    const tSin = constant(timestepEmbedding(x.gpu, t, c0, cfg.flip_sin_to_cos, cfg.freq_shift));
    return unetWalk(new FrozenOps(store), cfg, x, tSin);
  };
}
