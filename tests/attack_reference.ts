/**
 * Float64 references and tiny models for the attack, defense and evaluation tests: the per-sample losses,
 * the attacks' update rules, a fixed linear classifier (whose worst case under an Linf or L2 budget is
 * known in closed form) and a tiny random conv net built from autodiff ops.
 */
import type { Gpu } from "../src/gpu/context.ts";
import { constant, type Var } from "../src/autodiff/var.ts";
import { conv2d } from "../src/autodiff/conv2d.ts";
import { linear } from "../src/autodiff/matmul.ts";
import { addScalar, relu } from "../src/autodiff/elementwise.ts";
import { reshape } from "../src/nn/layers.ts";
import { keep } from "../src/tensor.ts";
import { f32, randArray, randn } from "./util.ts";
import { hostParams } from "./nn_reference.ts";
import { TINY_UNET, unetParamDecls } from "../src/nn/unet.ts";
import { type CnnConfig, cnnParamDecls } from "../src/nn/classifier.ts";
import { initParams } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/params.ts";
import { frozenClassifier, frozenEpsModel } from "../src/defense/networks.ts";
import { DiffusionPurifier, type PurifierOptions } from "../src/defense/purifier.ts";
import { type Defense, purified } from "../src/defense/defense.ts";

type F64 = Float64Array;

/** Indices of a row sorted by value descending, first index on ties (a stable sort). */
function order(z: ArrayLike<number>, base: number, k: number): number[] {
  return Array.from({ length: k }, (_, i) => i).sort((a, b) => z[base + b] - z[base + a] || a - b);
}

export function ceRef(z: ArrayLike<number>, labels: ArrayLike<number>, k: number): F64 {
  return Float64Array.from(labels, (y, n) => {
    let m = -Infinity;
    for (let i = 0; i < k; i++) m = Math.max(m, z[n * k + i]);
    let s = 0;
    for (let i = 0; i < k; i++) s += Math.exp(z[n * k + i] - m);
    return m + Math.log(s) - z[n * k + y];
  });
}

/** -(z_y - max_{i != y} z_i) / (z_p1 - z_p3 + 1e-12), as autoattack's dlr_loss. */
export function dlrRef(z: ArrayLike<number>, labels: ArrayLike<number>, k: number): F64 {
  return Float64Array.from(labels, (y, n) => {
    const o = order(z, n * k, k);
    const other = o[0] === y ? o[1] : o[0];
    const zz = (i: number) => z[n * k + i];
    return -(zz(y) - zz(other)) / (zz(o[0]) - zz(o[2]) + 1e-12);
  });
}

export function correctRef(z: ArrayLike<number>, labels: ArrayLike<number>, k: number): F64 {
  return Float64Array.from(labels, (y, n) => (order(z, n * k, k)[0] === y ? 1 : 0));
}

/** Per-sample L2 norm of a flat [n, per] array. */
export function normsRef(a: ArrayLike<number>, n: number): F64 {
  const per = a.length / n;
  return Float64Array.from({ length: n }, (_, s) => {
    let q = 0;
    for (let i = 0; i < per; i++) q += a[s * per + i] ** 2;
    return Math.sqrt(q);
  });
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** Projection of v onto the eps-ball around x0 (per sample) and the box, as the kernels define it. */
export function projectRef(
  v: ArrayLike<number>,
  x0: ArrayLike<number>,
  n: number,
  norm: string,
  eps: number,
): F64 {
  const per = v.length / n;
  if (norm === "linf") return Float64Array.from(v, (t, i) => clamp(clamp(t, x0[i] - eps, x0[i] + eps), 0, 1));
  const d = Float64Array.from(v, (t, i) => t - x0[i]);
  const dn = normsRef(d, n);
  return Float64Array.from(v, (_, i) => {
    const s = Math.floor(i / per);
    return clamp(x0[i] + d[i] * Math.min(1, eps / Math.max(dn[s], 1e-12)), 0, 1);
  });
}

/** x + step direction(g), projected; step per sample. */
export function ascendRef(
  x: ArrayLike<number>,
  g: ArrayLike<number>,
  x0: ArrayLike<number>,
  n: number,
  norm: string,
  step: ArrayLike<number>,
  eps: number,
): F64 {
  const per = x.length / n;
  const gn = normsRef(g, n);
  const moved = Float64Array.from(x, (t, i) => {
    const s = Math.floor(i / per);
    return norm === "linf" ? t + step[s] * Math.sign(g[i]) : t + step[s] * g[i] / (gn[s] + 1e-10);
  });
  return projectRef(moved, x0, n, norm, eps);
}

/** A fixed linear classifier logits = W x + b on flattened images, W [K, D] (weights as constants). */
export interface LinearModel {
  w: F64;
  b: F64;
  k: number;
  d: number;
  forward: (x: Var) => Var;
}

export function linearModel(gpu: Gpu, k: number, d: number, seed: number): LinearModel {
  const w = randn(k * d, seed).map((v) => v / Math.sqrt(d));
  const b = randArray(k, seed + 1, -0.1, 0.1);
  const wv = constant(keep(gpu.tensor(f32(w), [k, d]))), bv = constant(keep(gpu.tensor(f32(b), [k])));
  return { w, b, k, d, forward: (x: Var) => linear(reshape(x, [x.shape[0], d]), wv, bv) };
}

export function linearLogits(m: LinearModel, x: ArrayLike<number>, n: number): F64 {
  const out = new Float64Array(n * m.k);
  for (let s = 0; s < n; s++) {
    for (let j = 0; j < m.k; j++) {
      let acc = m.b[j];
      for (let i = 0; i < m.d; i++) acc += m.w[j * m.d + i] * x[s * m.d + i];
      out[s * m.k + j] = acc;
    }
  }
  return out;
}

export const argmaxRows = (z: ArrayLike<number>, n: number, k: number): Uint32Array =>
  Uint32Array.from({ length: n }, (_, s) => order(z, s * k, k)[0]);

/**
 * Whether the linear model can be fooled on each sample within the budget, ignoring the box (the inputs
 * stay far enough from 0 and 1): some class j has (w_y - w_j) x + b_y - b_j < eps ||w_y - w_j||_dual.
 */
export function linearFoolable(
  m: LinearModel,
  x: ArrayLike<number>,
  labels: ArrayLike<number>,
  norm: string,
  eps: number,
) {
  const z = linearLogits(m, x, labels.length);
  return Array.from(labels, (y, s) => {
    for (let j = 0; j < m.k; j++) {
      if (j === y) continue;
      let dual = 0;
      for (let i = 0; i < m.d; i++) {
        const dw = m.w[y * m.d + i] - m.w[j * m.d + i];
        dual += norm === "linf" ? Math.abs(dw) : dw * dw;
      }
      if (norm === "l2") dual = Math.sqrt(dual);
      if (z[s * m.k + y] - z[s * m.k + j] < eps * dual) return true;
    }
    return false;
  });
}

/**
 * A tiny conv net with random constant weights: conv3x3 -> relu -> conv3x3 stride 2 -> relu -> linear, on
 * x - 0.5 (centred, so that different images get different predictions) with He-scaled weights.
 */
export function tinyConvNet(gpu: Gpu, c: number, h: number, classes: number, seed: number): (x: Var) => Var {
  const c1 = 6, c2 = 8, h2 = Math.floor((h - 1) / 2) + 1;
  const param = (shape: number[], fanIn: number, s: number) => {
    const v = randn(shape.reduce((a, b) => a * b, 1), s).map((t) => t * Math.sqrt(2 / fanIn));
    return constant(keep(gpu.tensor(f32(v), shape)));
  };
  const w1 = param([c1, c, 3, 3], c * 9, seed), w2 = param([c2, c1, 3, 3], c1 * 9, seed + 1);
  const w3 = param([classes, c2 * h2 * h2], c2 * h2 * h2, seed + 2);
  return (x: Var) => {
    let y = relu(conv2d(addScalar(x, -0.5), w1, null, { padding: 1 }));
    y = relu(conv2d(y, w2, null, { padding: 1, stride: 2 }));
    return linear(reshape(y, [x.shape[0], c2 * h2 * h2]), w3, null);
  };
}

// ---------------------------------------------------------------- a tiny purified classifier

/** TINY_UNET (2 channels, 6x6) and a CNN sized to its images. */
export const TINY_NETS = {
  UCFG: TINY_UNET,
  CCFG: {
    image_size: 6,
    in_channels: 2,
    channels: [4, 4, 4],
    hidden: 8,
    classes: 10,
    norm_groups: 0,
  } as CnnConfig,
};

export interface Nets {
  defense(options: PurifierOptions): Defense;
  classifier: (x: Var) => Var;
  unetHost: Map<string, Float64Array>;
  cnnHost: Map<string, Float64Array>;
  /** The weights' stores (their gradients must stay zero: the attacks freeze the weights). */
  stores: ParamStore[];
  dispose(): void;
}

/** Random-weight tiny networks behind the real purifier code, with their weights on the host. */
export function tinyDefenseNets(gpu: Gpu, seed: number): Nets {
  const { UCFG, CCFG } = TINY_NETS;
  const u = initParams(unetParamDecls(UCFG), seed), c = initParams(cnnParamDecls(CCFG), seed + 1);
  const uStore = ParamStore.create(gpu, u), cStore = ParamStore.create(gpu, c);
  const classifier = frozenClassifier(cStore, { arch: "cnn", config: CCFG });
  const eps = frozenEpsModel(uStore, UCFG);
  return {
    defense: (o) => purified(classifier, new DiffusionPurifier(eps, o), "tiny"),
    classifier,
    unetHost: hostParams(u),
    cnnHost: hostParams(c),
    stores: [uStore, cStore],
    dispose: () => {
      uStore.dispose();
      cStore.dispose();
    },
  };
}
