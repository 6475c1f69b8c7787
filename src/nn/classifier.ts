/**
 * A small CNN classifier for 28x28x1 images (MNIST, Fashion-MNIST), input in [0, 1]:
 * conv3x3 c0 -> relu -> conv3x3 c1 stride 2 -> relu -> conv3x3 c2 stride 2 -> relu -> flatten ->
 * linear hidden -> relu -> linear classes (optional GroupNorm after each conv). Returns logits [N, classes].
 * With the defaults ([32, 64, 64], 128) it is ~12 MFLOP per image, within reach of 99% MNIST accuracy.
 */
import type { Gpu } from "../gpu/context.ts";
import type { Var } from "../autodiff/var.ts";
import { ParamStore } from "./params.ts";
import {
  conv,
  dense,
  expectImages,
  type ForwardOptions,
  initParams,
  type NetOps,
  norm,
  type ParamDecl,
  VarOps,
} from "./layers.ts";
import { type Sym, trace, type TraceReport } from "./flops.ts";

export interface CnnConfig {
  image_size: number;
  in_channels: number;
  /** Output channels of the three convolutions (the last two have stride 2). */
  channels: [number, number, number];
  hidden: number;
  classes: number;
  /** GroupNorm groups after each conv; 0 = no normalisation. */
  norm_groups: number;
}

export const MNIST_CNN: CnnConfig = {
  image_size: 28,
  in_channels: 1,
  channels: [32, 64, 64],
  hidden: 128,
  classes: 10,
  norm_groups: 0,
};

export function cnnWalk<T>(L: NetOps<T>, cfg: CnnConfig, x: T): T {
  let h = x;
  cfg.channels.forEach((c, i) => {
    h = conv(L, `conv${i + 1}`, h, c, 3, { stride: i === 0 ? 1 : 2, padding: 1 });
    if (cfg.norm_groups > 0) h = norm(L, `norm${i + 1}`, h, cfg.norm_groups, 1e-5);
    h = L.relu(h);
  });
  const [n, c, hh, ww] = L.shape(h);
  h = L.relu(dense(L, "fc1", L.reshape(h, [n, c * hh * ww]), cfg.hidden));
  return dense(L, "fc2", h, cfg.classes);
}

export function cnnTrace(cfg: CnnConfig): TraceReport {
  const s = cfg.image_size;
  return trace((L, x: Sym) => cnnWalk(L, cfg, x), [1, cfg.in_channels, s, s]);
}

export function cnnParamDecls(cfg: CnnConfig): ParamDecl[] {
  return cnnTrace(cfg).decls;
}

export function createCnn(gpu: Gpu, cfg: CnnConfig, seed: number): ParamStore {
  return ParamStore.create(gpu, initParams(cnnParamDecls(cfg), seed));
}

/** Logits [N, classes] for images x [N, C, H, W]. */
export function cnnForward(store: ParamStore, cfg: CnnConfig, x: Var, opts: ForwardOptions = {}): Var {
  expectImages("cnn", x, cfg.in_channels, cfg.image_size);
  return cnnWalk(new VarOps(store, opts), cfg, x);
}
