/**
 * The DDPM UNet, exactly diffusers' `UNet2DModel` with `time_embedding_type: "positional"`: same
 * parameter names and shapes (so `google/ddpm-cifar10-32` loads by name) and the same computation:
 * - time embedding: get_timestep_embedding(t, C0, flip_sin_to_cos, freq_shift), then
 *   time_embedding.linear_2(silu(linear_1(.))) with 4 C0 features;
 * - ResnetBlock2D: h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb)) per channel;
 *   h = conv2(dropout(silu(norm2(h)))); out = shortcut(x) + h (1x1 conv_shortcut when channels change);
 * - Attention (one head of all C channels): x + to_out.0(attn(group_norm(x) as [B, HW, C] tokens));
 * - Downsample2D (padding 0): zero-pad right and bottom by one, conv3x3 stride 2;
 * - Upsample2D: nearest 2x, conv3x3 padding 1;
 * - down blocks push every resnet/attention output and each downsample output as skips; up blocks have
 *   layers_per_block + 1 resnets, each concatenating the last skip (popped) after the running features;
 * - out: conv_out(silu(conv_norm_out(h))).
 * Timesteps come as a per-sample f32 [N] tensor, so a batch can mix timesteps.
 */
import type { Gpu } from "../gpu/context.ts";
import { ShapeError } from "../gpu/errors.ts";
import { keep, type Tensor } from "../tensor.ts";
import { map } from "../ops/map.ts";
import { constant, type Var } from "../autodiff/var.ts";
import { ParamStore } from "./params.ts";
import {
  conv,
  dense,
  type ForwardOptions,
  initParams,
  type NetOps,
  norm,
  type ParamDecl,
  VarOps,
} from "./layers.ts";
import { type Sym, trace, type TraceReport } from "./flops.ts";

export type DownBlockType = "DownBlock2D" | "AttnDownBlock2D";
export type UpBlockType = "UpBlock2D" | "AttnUpBlock2D";

/** The subset of diffusers' UNet2DModel config this implementation covers (same field names). */
export interface UNetConfig {
  sample_size: number;
  in_channels: number;
  out_channels: number;
  block_out_channels: number[];
  layers_per_block: number;
  down_block_types: DownBlockType[];
  up_block_types: UpBlockType[];
  downsample_padding: 0 | 1;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  norm_num_groups: number;
  norm_eps: number;
  /** Resnet dropout probability (diffusers' default is 0.0; DDPM trained CIFAR-10 with 0.1). */
  dropout: number;
}

/** google/ddpm-cifar10-32 (35.7 M parameters). */
export const CIFAR10_UNET: UNetConfig = {
  sample_size: 32,
  in_channels: 3,
  out_channels: 3,
  block_out_channels: [128, 256, 256, 256],
  layers_per_block: 2,
  down_block_types: ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
  downsample_padding: 0,
  flip_sin_to_cos: false,
  freq_shift: 1,
  norm_num_groups: 32,
  norm_eps: 1e-6,
  dropout: 0.1,
};

/** The default MNIST / Fashion-MNIST model: 28 -> 14 -> 7, attention at 7x7, under 100 MFLOP. */
export const MNIST_UNET: UNetConfig = {
  sample_size: 28,
  in_channels: 1,
  out_channels: 1,
  block_out_channels: [16, 32, 32],
  layers_per_block: 1,
  down_block_types: ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
  up_block_types: ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
  downsample_padding: 0,
  flip_sin_to_cos: false,
  freq_shift: 1,
  norm_num_groups: 8,
  norm_eps: 1e-6,
  dropout: 0.1,
};

/** A tiny model for fast tests: every block kind, odd spatial size at the bottom (6 -> 3). */
export const TINY_UNET: UNetConfig = {
  sample_size: 6,
  in_channels: 2,
  out_channels: 2,
  block_out_channels: [8, 12],
  layers_per_block: 1,
  down_block_types: ["DownBlock2D", "AttnDownBlock2D"],
  up_block_types: ["AttnUpBlock2D", "UpBlock2D"],
  downsample_padding: 0,
  flip_sin_to_cos: false,
  freq_shift: 1,
  norm_num_groups: 4,
  norm_eps: 1e-6,
  dropout: 0.1,
};

export function validateConfig(cfg: UNetConfig): void {
  const bad = (what: string) => {
    throw new RangeError(`UNet config: ${what}`);
  };
  const levels = cfg.block_out_channels.length;
  if (levels < 1) bad("block_out_channels is empty");
  if (cfg.down_block_types.length !== levels || cfg.up_block_types.length !== levels) {
    bad(`${levels} block_out_channels need as many down_block_types and up_block_types`);
  }
  for (const t of cfg.down_block_types) if (t !== "DownBlock2D" && t !== "AttnDownBlock2D") bad(`block ${t}`);
  for (const t of cfg.up_block_types) if (t !== "UpBlock2D" && t !== "AttnUpBlock2D") bad(`block ${t}`);
  if (cfg.block_out_channels[0] % 2) bad("block_out_channels[0] must be even (sin/cos halves)");
  if (cfg.block_out_channels.some((c) => c % cfg.norm_num_groups)) bad("channels must divide into groups");
  if (!(cfg.layers_per_block >= 1)) bad("layers_per_block must be >= 1");
  if (cfg.downsample_padding !== 0 && cfg.downsample_padding !== 1) bad("downsample_padding must be 0 or 1");
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) bad(`dropout ${cfg.dropout} outside [0, 1)`);
  if (cfg.sample_size % 2 ** (levels - 1)) bad(`sample_size must be divisible by ${2 ** (levels - 1)}`);
}

// ---------------------------------------------------------------- the architecture walk

interface Ctx<T> {
  L: NetOps<T>;
  cfg: UNetConfig;
  /** silu(temb): every resnet applies silu to the same time embedding, so it is computed once. */
  tembAct: T;
}

function resnet<T>({ L, cfg, tembAct }: Ctx<T>, name: string, x: T, cout: number): T {
  const g = cfg.norm_num_groups, eps = cfg.norm_eps;
  const [n, cin] = L.shape(x);
  let h = conv(L, `${name}.conv1`, L.silu(norm(L, `${name}.norm1`, x, g, eps)), cout, 3, { padding: 1 });
  const proj = dense(L, `${name}.time_emb_proj`, tembAct, cout);
  h = L.add(h, L.reshape(proj, [n, cout, 1, 1]));
  h = L.dropout(L.silu(norm(L, `${name}.norm2`, h, g, eps)), cfg.dropout);
  h = conv(L, `${name}.conv2`, h, cout, 3, { padding: 1 });
  const skip = cin === cout ? x : conv(L, `${name}.conv_shortcut`, x, cout, 1);
  return L.add(skip, h);
}

/** One-head self-attention over the H*W pixels with a residual. Tokens are never materialised as
 * [B, HW, C]: the projections read the NCHW features transposed (matmul flags) and write back NCHW. */
function attentionBlock<T>({ L, cfg }: Ctx<T>, name: string, x: T): T {
  const [n, c, h, w] = L.shape(x);
  const hn = norm(L, `${name}.group_norm`, x, cfg.norm_num_groups, cfg.norm_eps);
  const tokensT = L.reshape(hn, [n, c, h * w]); // [B, C, L]
  const init = { kind: "uniform", bound: 1 / Math.sqrt(c) } as const;
  const weight = (p: string) => L.param(`${name}.${p}.weight`, [c, c], init);
  const bias = (p: string, shape: number[]) => L.reshape(L.param(`${name}.${p}.bias`, [c], init), shape);
  // tokens W^T + b, tokens = tokensT^T: [B, L, C]
  const project = (p: string) =>
    L.add(L.matmul(tokensT, weight(p), { transA: true, transB: true }), bias(p, [1, 1, c]));
  const q = project("to_q"), k = project("to_k"), v = project("to_v");
  const o = L.attention(q, k, v, 1 / Math.sqrt(c)); // [B, L, C]
  // (o W^T + b)^T = W o^T + b: [B, C, L], already NCHW
  const out = L.add(L.matmul(weight("to_out.0"), o, { transB: true }), bias("to_out.0", [1, c, 1]));
  return L.add(x, L.reshape(out, [n, c, h, w]));
}

function downsample<T>({ L, cfg }: Ctx<T>, name: string, x: T): T {
  const c = L.shape(x)[1];
  if (cfg.downsample_padding === 0) return conv(L, `${name}.conv`, L.padBottomRight(x), c, 3, { stride: 2 });
  return conv(L, `${name}.conv`, x, c, 3, { stride: 2, padding: 1 });
}

function upsample<T>({ L }: Ctx<T>, name: string, x: T): T {
  return conv(L, `${name}.conv`, L.upsampleNearest2x(x), L.shape(x)[1], 3, { padding: 1 });
}

/**
 * The UNet on `sample` [N, in, H, W] given the sinusoidal timestep embedding `tSin` [N, C0]
 * (timestepEmbedding). Declares every parameter with diffusers' name as it goes.
 */
export function unetWalk<T>(L: NetOps<T>, cfg: UNetConfig, sample: T, tSin: T): T {
  const chans = cfg.block_out_channels, levels = chans.length, c0 = chans[0];
  const temb = dense(
    L,
    "time_embedding.linear_2",
    L.silu(dense(L, "time_embedding.linear_1", tSin, 4 * c0)),
    4 * c0,
  );
  const ctx: Ctx<T> = { L, cfg, tembAct: L.silu(temb) };

  let h = conv(L, "conv_in", sample, c0, 3, { padding: 1 });
  const skips: T[] = [h];
  cfg.down_block_types.forEach((type, i) => {
    const name = `down_blocks.${i}`;
    for (let j = 0; j < cfg.layers_per_block; j++) {
      h = resnet(ctx, `${name}.resnets.${j}`, h, chans[i]);
      if (type === "AttnDownBlock2D") h = attentionBlock(ctx, `${name}.attentions.${j}`, h);
      skips.push(h);
    }
    if (i < levels - 1) {
      h = downsample(ctx, `${name}.downsamplers.0`, h);
      skips.push(h);
    }
  });

  const cMid = chans[levels - 1];
  h = resnet(ctx, "mid_block.resnets.0", h, cMid);
  h = attentionBlock(ctx, "mid_block.attentions.0", h);
  h = resnet(ctx, "mid_block.resnets.1", h, cMid);

  const reversed = [...chans].reverse();
  cfg.up_block_types.forEach((type, i) => {
    const name = `up_blocks.${i}`;
    for (let j = 0; j < cfg.layers_per_block + 1; j++) {
      h = L.concatChannels([h, skips.pop()!]);
      h = resnet(ctx, `${name}.resnets.${j}`, h, reversed[i]);
      if (type === "AttnUpBlock2D") h = attentionBlock(ctx, `${name}.attentions.${j}`, h);
    }
    if (i < levels - 1) h = upsample(ctx, `${name}.upsamplers.0`, h);
  });

  h = L.silu(norm(L, "conv_norm_out", h, cfg.norm_num_groups, cfg.norm_eps));
  return conv(L, "conv_out", h, cfg.out_channels, 3, { padding: 1 });
}

// ---------------------------------------------------------------- model data

/** Trace of one image: parameter declarations (diffusers order of construction) and FLOPs. */
export function unetTrace(cfg: UNetConfig): TraceReport {
  validateConfig(cfg);
  const s = cfg.sample_size;
  return trace(
    (L, x: Sym, t: Sym) => unetWalk(L, cfg, x, t),
    [1, cfg.in_channels, s, s],
    [1, cfg.block_out_channels[0]],
  );
}

export function unetParamDecls(cfg: UNetConfig): ParamDecl[] {
  return unetTrace(cfg).decls;
}

/** A fresh model: PyTorch's default initialisation from `seed`. */
export function createUNet(gpu: Gpu, cfg: UNetConfig, seed: number): ParamStore {
  return ParamStore.create(gpu, initParams(unetParamDecls(cfg), seed));
}

/**
 * Map names from older hub checkpoints (diffusers' deprecated AttentionBlock) to the current ones:
 * query/key/value/proj_attn -> to_q/to_k/to_v/to_out.0.
 */
export function renameDeprecatedAttention(name: string): string {
  return name.replace(
    /\.attentions\.(\d+)\.(query|key|value|proj_attn)\./,
    (_, j, p) =>
      `.attentions.${j}.${
        { query: "to_q", key: "to_k", value: "to_v", proj_attn: "to_out.0" }[p as string]
      }.`,
  );
}

// ---------------------------------------------------------------- timestep embedding

/** Per (gpu, dim, shift): the float32 frequency table, a constant uploaded once. */
const freqTables = new WeakMap<Gpu, Map<string, Tensor>>();

/** freq_k = exp(-ln(10000) k / (half - shift)), k < half, rounded to float32 as torch computes it. */
export function timestepFrequencies(dim: number, shift: number): Float32Array {
  const half = dim / 2;
  return Float32Array.from({ length: half }, (_, k) => Math.exp((-Math.log(10000) * k) / (half - shift)));
}

function freqTable(gpu: Gpu, dim: number, shift: number): Tensor {
  let byKey = freqTables.get(gpu);
  if (!byKey) freqTables.set(gpu, byKey = new Map());
  const key = `${dim}:${shift}`;
  let t = byKey.get(key);
  if (!t) {
    t = keep(gpu.tensor(timestepFrequencies(dim, shift)));
    byKey.set(key, t);
  }
  return t;
}

// Cody-Waite reduction of the phase to [-pi, pi] before sin/cos: 2 pi = C1 + C2 with C1 = 6.28125 (8
// significant bits, so k C1 is exact for |k| < 2^15 even without a fused multiply-add) and C2 the rest.
// Large timesteps (phase up to ~1000) would otherwise depend on the driver's sin/cos range reduction.
const TWO_PI_C1 = "6.28125";
const TWO_PI_C2 = "0.0019353071795864769";

/**
 * diffusers' get_timestep_embedding: t f32 [N] -> [N, dim], emb = [sin(t freq), cos(t freq)] (cos first
 * when `flip`). The phase t * freq is rounded to float32 as in torch; sin/cos are then accurate.
 */
export function timestepEmbedding(gpu: Gpu, t: Tensor, dim: number, flip: boolean, shift: number): Tensor {
  if (t.shape.length !== 1 || t.dtype !== "f32") {
    throw new ShapeError("timestepEmbedding", `timesteps must be f32 [N], got ${t}`);
  }
  if (dim % 2 || dim < 2) throw new ShapeError("timestepEmbedding", `dim ${dim} must be even`);
  const half = dim / 2;
  const freqs = freqTable(gpu, dim, shift);
  const k = `round(x0 * x1 * 0.15915494)`;
  const phase = `(x0 * x1 - ${k} * ${TWO_PI_C1} - ${k} * ${TWO_PI_C2})`;
  const first = flip ? "cos" : "sin", second = flip ? "sin" : "cos";
  const expr = `select(${first}(${phase}), ${second}(${phase}), (i % ${dim}u) >= ${half}u)`;
  return map(gpu, "timestep_emb", expr, [
    { t, index: `i / ${dim}u` },
    { t: freqs, index: `(i % ${dim}u) % ${half}u` },
  ], { shape: [t.size, dim] });
}

// ---------------------------------------------------------------- forward

/**
 * The predicted noise for `x` [N, in, H, W] at timesteps `t` (f32 [N]). Gradients flow to x and to the
 * store's parameters. Options: `train` (dropout on; needs `rngKey`), `siteBase` for the dropout sites.
 */
export function unetForward(
  store: ParamStore,
  cfg: UNetConfig,
  x: Var,
  t: Tensor,
  opts: ForwardOptions = {},
): Var {
  if (x.shape.length !== 4 || x.shape[1] !== cfg.in_channels) {
    throw new ShapeError("unet", `input must be [N, ${cfg.in_channels}, H, W], got [${x.shape}]`);
  }
  if (t.size !== x.shape[0]) throw new ShapeError("unet", `${t.size} timesteps for a batch of ${x.shape[0]}`);
  const c0 = cfg.block_out_channels[0];
  const tSin = constant(timestepEmbedding(x.gpu, t, c0, cfg.flip_sin_to_cos, cfg.freq_shift));
  return unetWalk(new VarOps(store, opts), cfg, x, tSin);
}
