/**
 * Networks are written once, as functions generic in the activation type T, over the small vocabulary
 * `NetOps<T>`. Running the same walk with different `NetOps` gives:
 * - `VarOps` (here): the differentiable forward on the GPU, parameters fetched from a ParamStore by name;
 * - `ShapeTracer` (flops.ts): parameter specs and FLOP counts from shapes alone (no GPU);
 * - a float64 CPU executor (tests/nn_reference.ts): the reference the GPU forward is checked against.
 * So the declared parameters and the ones the forward uses cannot disagree: there is one walk.
 *
 * Layer helpers (`conv`, `dense`, `norm`, `resnet`-like blocks in the model files) declare their
 * parameters with PyTorch's default initialisation and call the ops.
 */
import type { Gpu } from "../gpu/context.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import type { ParamInit, ParamSpec, ParamStore } from "./params.ts";
import { map } from "../ops/map.ts";
import * as ew from "../ops/elementwise.ts";
import { dropoutMask } from "../ops/random.ts";
import { constant, record, type Var } from "../autodiff/var.ts";
import { add, relu, silu } from "../autodiff/elementwise.ts";
import { mean } from "../autodiff/reduce.ts";
import { conv2d, type Conv2dOptions } from "../autodiff/conv2d.ts";
import { linear, matmul } from "../autodiff/matmul.ts";
import { groupNorm } from "../autodiff/groupnorm.ts";
import { concatChannels } from "../autodiff/channels.ts";
import { attention } from "../autodiff/attention.ts";
import { upsampleNearest2x } from "../autodiff/resample.ts";
import { mulberry32 } from "../data/random.ts";

export type { Conv2dOptions };

/** How a parameter starts: PyTorch's defaults (conv/linear: U(-1/sqrt(fan_in), +1/sqrt(fan_in))). */
export type Init =
  | { kind: "zeros" }
  | { kind: "ones" }
  | { kind: "uniform"; bound: number };

/** A declared parameter: name (the checkpoint key), shape and initialisation. */
export interface ParamDecl extends ParamSpec {
  shape: readonly number[];
  init: Init;
}

export interface MatmulFlags {
  transA?: boolean;
  transB?: boolean;
}

/** The vocabulary of every architecture. Shapes follow the raw ops (NCHW, [out, in] weights). */
export interface NetOps<T> {
  /** Declare a parameter (tracer) or fetch it by name (executor). */
  param(name: string, shape: readonly number[], init: Init): T;
  shape(x: T): readonly number[];
  conv2d(x: T, w: T, b: T | null, opts: Conv2dOptions): T;
  /** x [..., in] w^T + b with w [out, in]. */
  linear(x: T, w: T, b: T | null): T;
  matmul(a: T, b: T, opts: MatmulFlags): T;
  groupNorm(x: T, gamma: T, beta: T, groups: number, eps: number): T;
  /** softmax(q k^T * scale) v per batch: q, k, v [B, L, D]. */
  attention(q: T, k: T, v: T, scale: number): T;
  /** a + b with numpy broadcasting of size-1 axes (b may be [N, C, 1, 1] or [1, 1, C], never 1-D). */
  add(a: T, b: T): T;
  silu(x: T): T;
  relu(x: T): T;
  reshape(x: T, shape: readonly number[]): T;
  concatChannels(xs: readonly T[]): T;
  /** NCHW zero pad by one row at the bottom and one column at the right (diffusers' Downsample2D). */
  padBottomRight(x: T): T;
  upsampleNearest2x(x: T): T;
  /** Global average pool: [N, C, H, W] -> [N, C]. */
  meanSpatial(x: T): T;
  /** Inverted dropout with drop probability p; each call is a distinct random site. */
  dropout(x: T, p: number): T;
}

// ---------------------------------------------------------------- layer helpers

const fanInUniform = (fanIn: number): Init => ({ kind: "uniform", bound: 1 / Math.sqrt(fanIn) });

/** Conv2d with bias: `${name}.weight` [cout, cin, k, k], `${name}.bias` [cout]. */
export function conv<T>(
  L: NetOps<T>,
  name: string,
  x: T,
  cout: number,
  k: 1 | 3,
  opts: Conv2dOptions = {},
): T {
  const cin = L.shape(x)[1];
  const init = fanInUniform(cin * k * k);
  const w = L.param(`${name}.weight`, [cout, cin, k, k], init);
  const b = L.param(`${name}.bias`, [cout], init);
  return L.conv2d(x, w, b, opts);
}

/** Linear with bias: `${name}.weight` [out, in], `${name}.bias` [out]. */
export function dense<T>(L: NetOps<T>, name: string, x: T, out: number): T {
  const s = L.shape(x), inF = s[s.length - 1];
  const init = fanInUniform(inF);
  const w = L.param(`${name}.weight`, [out, inF], init);
  const b = L.param(`${name}.bias`, [out], init);
  return L.linear(x, w, b);
}

/** GroupNorm with affine `${name}.weight`, `${name}.bias` [C]. */
export function norm<T>(L: NetOps<T>, name: string, x: T, groups: number, eps: number): T {
  const c = L.shape(x)[1];
  if (c % groups !== 0) throw new ShapeError(name, `${c} channels do not split into ${groups} groups`);
  const gamma = L.param(`${name}.weight`, [c], { kind: "ones" });
  const beta = L.param(`${name}.bias`, [c], { kind: "zeros" });
  return L.groupNorm(x, gamma, beta, groups, eps);
}

// ---------------------------------------------------------------- parameter initialisation

/** Host values for declared parameters, from one deterministic stream seeded by `seed`. */
export function initParams(decls: readonly ParamDecl[], seed: number): ParamInit[] {
  const bits = mulberry32(seed);
  const next = () => bits() / 4294967296;
  return decls.map((d) => {
    const size = d.shape.reduce((x, y) => x * y, 1);
    const init = new Float32Array(size);
    if (d.init.kind === "ones") init.fill(1);
    else if (d.init.kind === "uniform") {
      const b = d.init.bound;
      for (let i = 0; i < size; i++) init[i] = (2 * next() - 1) * b;
    }
    return { name: d.name, shape: [...d.shape], init };
  });
}

export const paramCount = (decls: readonly ParamSpec[]): number =>
  decls.reduce((n, d) => n + d.shape.reduce((x, y) => x * y, 1), 0);

// ---------------------------------------------------------------- small differentiable ops

/** A view with another shape; the gradient is the incoming one reshaped back (the tape copies it). */
export function reshape(x: Var, shape: readonly number[]): Var {
  return record("reshape", x.value.reshape(shape), [x], (g) => [g.reshape(x.shape)]);
}

/** NCHW [N, C, H, W] -> [N, C, H + 1, W + 1] with a zero last row and column (one map pass). */
export function padBottomRightRaw(gpu: Gpu, x: Tensor): Tensor {
  const [n, c, h, w] = checkNchw("padBottomRight", x.shape);
  const h1 = h + 1, w1 = w + 1;
  // rows/columns past the input read a clamped (valid) element that the expression then zeroes
  const index = `(i / ${h1 * w1}u) * ${h * w}u + min((i / ${w1}u) % ${h1}u, ${h - 1}u) * ${w}u + ` +
    `min(i % ${w1}u, ${w - 1}u)`;
  const expr = `select(0.0, x0, (i % ${w1}u) < ${w}u && ((i / ${w1}u) % ${h1}u) < ${h}u)`;
  return map(gpu, "pad_br", expr, [{ t: x, index }], { shape: [n, c, h1, w1] });
}

/** The gradient of padBottomRight: crop [N, C, H + 1, W + 1] to [N, C, H, W]. */
export function cropBottomRightRaw(gpu: Gpu, g: Tensor): Tensor {
  const [n, c, h1, w1] = checkNchw("cropBottomRight", g.shape);
  const h = h1 - 1, w = w1 - 1;
  const index = `(i / ${h * w}u) * ${h1 * w1}u + ((i / ${w}u) % ${h}u) * ${w1}u + i % ${w}u`;
  return map(gpu, "crop_br", "x0", [{ t: g, index }], { shape: [n, c, h, w] });
}

export function padBottomRight(x: Var): Var {
  const gpu = x.gpu;
  return record("padBottomRight", padBottomRightRaw(gpu, x.value), [x], (g) => [cropBottomRightRaw(gpu, g)]);
}

/** x * mask, mask = dropoutMask(key, p, site): reproducible from (key, site), so a checkpointed
 * recomputation draws the same mask. */
export function dropout(x: Var, p: number, key: Tensor, site: number): Var {
  const gpu = x.gpu;
  const mask = dropoutMask(gpu, x.shape, key, p, site);
  const y = ew.mul(gpu, x.value, mask);
  return record("dropout", y, [x], (g) => [ew.mul(gpu, g, mask)]);
}

function checkNchw(op: string, shape: readonly number[]): [number, number, number, number] {
  if (shape.length !== 4) throw new ShapeError(op, `expected [N, C, H, W], got [${shape}]`);
  return shape as [number, number, number, number];
}

// ---------------------------------------------------------------- the GPU executor

export interface ForwardOptions {
  /** Training mode: dropout active (needs rngKey). Default false. */
  train?: boolean;
  /** u32[4] Philox key (ops/random.ts) for dropout; one per training step. */
  rngKey?: Tensor;
  /** First dropout site; sites are numbered in walk order from here. Default 0. */
  siteBase?: number;
  /** Parameters enter as constants: no weight gradients are computed or accumulated (attacks and
   * purification need d/d input only, which saves about half the backward work). Default false. */
  frozen?: boolean;
}

/** Runs a walk on Vars: parameters come from `store` by name (shapes checked). */
export class VarOps implements NetOps<Var> {
  private site: number;
  private readonly constants = new Map<string, Var>();

  constructor(readonly store: ParamStore, readonly opts: ForwardOptions = {}) {
    this.site = opts.siteBase ?? 0;
  }

  param(name: string, shape: readonly number[]): Var {
    const v = this.store.get(name);
    if (v.shape.join() !== shape.join()) {
      throw new ShapeError(name, `the store holds [${v.shape}] but the network needs [${shape}]`);
    }
    if (!this.opts.frozen) return v;
    let c = this.constants.get(name);
    if (!c) this.constants.set(name, c = constant(v.value, name));
    return c;
  }

  shape = (x: Var) => x.shape;
  conv2d = (x: Var, w: Var, b: Var | null, opts: Conv2dOptions) => conv2d(x, w, b, opts);
  linear = (x: Var, w: Var, b: Var | null) => linear(x, w, b);
  matmul = (a: Var, b: Var, opts: MatmulFlags) => matmul(a, b, opts);
  groupNorm = (x: Var, g: Var, b: Var, groups: number, eps: number) => groupNorm(x, g, b, groups, eps);
  attention = (q: Var, k: Var, v: Var, scale: number) => attention(q, k, v, scale);
  add = (a: Var, b: Var) => add(a, b);
  silu = (x: Var) => silu(x);
  relu = (x: Var) => relu(x);
  reshape = (x: Var, shape: readonly number[]) => reshape(x, shape);
  concatChannels = (xs: readonly Var[]) => concatChannels(xs);
  padBottomRight = (x: Var) => padBottomRight(x);
  upsampleNearest2x = (x: Var) => upsampleNearest2x(x);
  meanSpatial = (x: Var) => mean(x, [2, 3]);

  dropout(x: Var, p: number): Var {
    const site = this.site++;
    if (!this.opts.train || p === 0) return x;
    if (!this.opts.rngKey) throw new Error("dropout in training mode needs forward options' rngKey");
    return dropout(x, p, this.opts.rngKey, site);
  }
}

/** Check that x is a batch of images [N, channels, size, size]; the error names the network. */
export function expectImages(net: string, x: Var, channels: number, size: number): void {
  if (x.shape.join() !== [x.shape[0], channels, size, size].join()) {
    throw new ShapeError(net, `input must be [N, ${channels}, ${size}, ${size}], got [${x.shape}]`);
  }
}
