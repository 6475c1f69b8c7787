/**
 * Wide ResNet (Zagoruyko & Komodakis 2016) for 32x32x3 CIFAR-10, WRN-depth-width with pre-activation
 * blocks: (depth - 4) / 6 blocks in each of three stages of 16w, 32w, 64w channels (strides 1, 2, 2).
 * Block: o = relu(norm1(x)); h = conv2(dropout(relu(norm2(conv1(o))))); out = h + (x, or a 1x1 strided
 * conv of o when the shape changes). Head: relu(norm_out(.)), global average pool, linear.
 *
 * GroupNorm instead of BatchNorm: no running statistics, so train and eval compute the same function,
 * attacks and purification see per-sample behaviour independent of the batch, and the model needs no
 * mutable state besides its parameters. `norm_groups` must divide 16 and every stage width.
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

export interface WideResNetConfig {
  depth: number;
  width: number;
  image_size: number;
  in_channels: number;
  classes: number;
  norm_groups: number;
  norm_eps: number;
  dropout: number;
}

/** WRN-28-10 (36.5 M parameters). */
export const CIFAR10_WRN: WideResNetConfig = {
  depth: 28,
  width: 10,
  image_size: 32,
  in_channels: 3,
  classes: 10,
  norm_groups: 16,
  norm_eps: 1e-5,
  dropout: 0,
};

export function validateWrn(cfg: WideResNetConfig): void {
  if ((cfg.depth - 4) % 6 || cfg.depth < 10) throw new RangeError(`WRN depth ${cfg.depth} is not 6n + 4`);
  if (!(cfg.width >= 1 && Number.isInteger(cfg.width))) throw new RangeError(`WRN width ${cfg.width}`);
  if (16 % cfg.norm_groups) throw new RangeError(`WRN: ${cfg.norm_groups} groups do not divide 16 channels`);
  if (cfg.image_size % 4) throw new RangeError(`WRN: image size ${cfg.image_size} not divisible by 4`);
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new RangeError(`WRN dropout ${cfg.dropout}`);
}

export function wrnWalk<T>(L: NetOps<T>, cfg: WideResNetConfig, x: T): T {
  const g = cfg.norm_groups, eps = cfg.norm_eps;
  const perStage = (cfg.depth - 4) / 6;
  let h = conv(L, "conv_in", x, 16, 3, { padding: 1 });
  [16, 32, 64].forEach((base, s) => {
    const cout = base * cfg.width;
    for (let j = 0; j < perStage; j++) {
      const name = `stages.${s}.blocks.${j}`;
      const stride = s > 0 && j === 0 ? 2 : 1;
      const o = L.relu(norm(L, `${name}.norm1`, h, g, eps));
      let r = conv(L, `${name}.conv1`, o, cout, 3, { stride, padding: 1 });
      r = L.dropout(L.relu(norm(L, `${name}.norm2`, r, g, eps)), cfg.dropout);
      r = conv(L, `${name}.conv2`, r, cout, 3, { padding: 1 });
      const changes = stride !== 1 || L.shape(h)[1] !== cout;
      h = L.add(changes ? conv(L, `${name}.shortcut`, o, cout, 1, { stride }) : h, r);
    }
  });
  h = L.meanSpatial(L.relu(norm(L, "norm_out", h, g, eps)));
  return dense(L, "fc", h, cfg.classes);
}

export function wrnTrace(cfg: WideResNetConfig): TraceReport {
  validateWrn(cfg);
  const s = cfg.image_size;
  return trace((L, x: Sym) => wrnWalk(L, cfg, x), [1, cfg.in_channels, s, s]);
}

export function wrnParamDecls(cfg: WideResNetConfig): ParamDecl[] {
  return wrnTrace(cfg).decls;
}

export function createWideResNet(gpu: Gpu, cfg: WideResNetConfig, seed: number): ParamStore {
  return ParamStore.create(gpu, initParams(wrnParamDecls(cfg), seed));
}

/** Logits [N, classes] for images x [N, 3, 32, 32] (train: dropout on, needs opts.rngKey). */
export function wrnForward(store: ParamStore, cfg: WideResNetConfig, x: Var, opts: ForwardOptions = {}): Var {
  expectImages("wideresnet", x, cfg.in_channels, cfg.image_size);
  return wrnWalk(new VarOps(store, opts), cfg, x);
}
