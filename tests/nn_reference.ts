/**
 * Float64 CPU references for the networks: `CpuOps` runs the same architecture walks as the GPU
 * (src/nn/layers.ts: NetOps) with naive float64 loops written independently of the kernels, including
 * dropout masks recomputed with the CPU Philox. Also: diffusers' UNet2DModel parameter table transcribed
 * from its constructors (independent of the walk), and finite differences over chosen coordinates.
 */
import type { Conv2dOptions, Init, MatmulFlags, NetOps } from "../src/nn/layers.ts";
import { bernoulliThreshold, randomBitsCpu } from "../src/ops/random.ts";
import type { UNetConfig } from "../src/nn/unet.ts";
import type { Gpu } from "../src/gpu/context.ts";
import type { ParamInit, ParamStore } from "../src/nn/params.ts";
import { backward, leaf, type Var } from "../src/autodiff/var.ts";
import { scopeAsync } from "../src/tensor.ts";
import { assertClose, f32, randArray, rng } from "./util.ts";

export interface Arr {
  shape: number[];
  data: Float64Array;
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const arr = (shape: readonly number[]): Arr => ({ shape: [...shape], data: new Float64Array(size(shape)) });

export interface CpuOptions {
  train?: boolean;
  /** The four key words of the GPU rngKey (ops/random.ts keyWords). */
  keyWords?: Uint32Array;
  siteBase?: number;
}

export class CpuOps implements NetOps<Arr> {
  readonly used = new Set<string>();
  private site: number;

  constructor(readonly params: ReadonlyMap<string, Float64Array>, readonly opts: CpuOptions = {}) {
    this.site = opts.siteBase ?? 0;
  }

  param(name: string, shape: readonly number[], _init: Init): Arr {
    const d = this.params.get(name);
    if (!d || d.length !== size(shape)) throw new Error(`reference: parameter ${name} [${shape}] missing`);
    this.used.add(name);
    return { shape: [...shape], data: d };
  }

  shape = (x: Arr) => x.shape;

  conv2d(x: Arr, w: Arr, b: Arr | null, opts: Conv2dOptions): Arr {
    const [n, ci, h, wd] = x.shape, [co, , k] = w.shape;
    const s = opts.stride ?? 1, p = opts.padding ?? 0;
    const oh = Math.floor((h + 2 * p - k) / s) + 1, ow = Math.floor((wd + 2 * p - k) / s) + 1;
    const y = arr([n, co, oh, ow]);
    // weight-stationary loops with a contiguous innermost loop over output columns
    for (let b_ = 0; b_ < n; b_++) {
      for (let o = 0; o < co; o++) {
        const yo = (b_ * co + o) * oh * ow;
        if (b) y.data.fill(b.data[o], yo, yo + oh * ow);
        for (let c = 0; c < ci; c++) {
          const xc = (b_ * ci + c) * h * wd;
          for (let ky = 0; ky < k; ky++) {
            for (let kx = 0; kx < k; kx++) {
              const wv = w.data[((o * ci + c) * k + ky) * k + kx];
              const ox0 = Math.max(0, Math.ceil((p - kx) / s));
              const ox1 = Math.min(ow, Math.floor((wd - 1 + p - kx) / s) + 1);
              for (let oy = 0; oy < oh; oy++) {
                const iy = oy * s - p + ky;
                if (iy < 0 || iy >= h) continue;
                const xr = xc + iy * wd - p + kx, yr = yo + oy * ow;
                for (let ox = ox0; ox < ox1; ox++) y.data[yr + ox] += wv * x.data[xr + ox * s];
              }
            }
          }
        }
      }
    }
    return y;
  }

  linear(x: Arr, w: Arr, b: Arr | null): Arr {
    const [out, inF] = w.shape, rows = size(x.shape) / inF;
    const y = arr([...x.shape.slice(0, -1), out]);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < out; o++) {
        let acc = b ? b.data[o] : 0;
        for (let i = 0; i < inF; i++) acc += x.data[r * inF + i] * w.data[o * inF + i];
        y.data[r * out + o] = acc;
      }
    }
    return y;
  }

  matmul(a: Arr, b: Arr, opts: MatmulFlags): Arr {
    const batchOf = (t: Arr) => (t.shape.length === 3 ? t.shape[0] : 0);
    const rc = (t: Arr) => t.shape.slice(-2);
    const [ra, ca] = rc(a), [rb, cb] = rc(b);
    const m = opts.transA ? ca : ra, k = opts.transA ? ra : ca, n = opts.transB ? rb : cb;
    const batch = batchOf(a) || batchOf(b);
    const y = arr(batch ? [batch, m, n] : [m, n]);
    for (let q = 0; q < Math.max(batch, 1); q++) {
      const oa = batchOf(a) ? q * ra * ca : 0, ob = batchOf(b) ? q * rb * cb : 0;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let l = 0; l < k; l++) {
            const av = a.data[oa + (opts.transA ? l * ca + i : i * ca + l)];
            const bv = b.data[ob + (opts.transB ? j * cb + l : l * cb + j)];
            acc += av * bv;
          }
          y.data[q * m * n + i * n + j] = acc;
        }
      }
    }
    return y;
  }

  groupNorm(x: Arr, gamma: Arr, beta: Arr, groups: number, eps: number): Arr {
    const [n, c] = x.shape, hw = size(x.shape.slice(2)), cg = c / groups;
    const y = arr(x.shape);
    for (let b = 0; b < n; b++) {
      for (let g = 0; g < groups; g++) {
        const start = (b * c + g * cg) * hw, len = cg * hw;
        let mean = 0;
        for (let i = 0; i < len; i++) mean += x.data[start + i];
        mean /= len;
        let v = 0;
        for (let i = 0; i < len; i++) v += (x.data[start + i] - mean) ** 2;
        const rstd = 1 / Math.sqrt(v / len + eps);
        for (let i = 0; i < len; i++) {
          const ch = g * cg + Math.floor(i / hw);
          y.data[start + i] = (x.data[start + i] - mean) * rstd * gamma.data[ch] + beta.data[ch];
        }
      }
    }
    return y;
  }

  attention(q: Arr, k: Arr, v: Arr, scale: number): Arr {
    const [bs, l, d] = q.shape;
    const y = arr(q.shape);
    const row = new Float64Array(l);
    for (let b = 0; b < bs; b++) {
      for (let i = 0; i < l; i++) {
        let max = -Infinity;
        for (let j = 0; j < l; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += q.data[(b * l + i) * d + e] * k.data[(b * l + j) * d + e];
          row[j] = s * scale;
          max = Math.max(max, row[j]);
        }
        let z = 0;
        for (let j = 0; j < l; j++) z += row[j] = Math.exp(row[j] - max);
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < l; j++) acc += row[j] * v.data[(b * l + j) * d + e];
          y.data[(b * l + i) * d + e] = acc / z;
        }
      }
    }
    return y;
  }

  add(a: Arr, b: Arr): Arr {
    const shape = a.shape.map((n, d) => Math.max(n, b.shape[d]));
    const y = arr(shape);
    const at = (t: Arr, idx: number[]) => {
      let o = 0;
      for (let d = 0; d < shape.length; d++) o = o * t.shape[d] + (t.shape[d] === 1 ? 0 : idx[d]);
      return t.data[o];
    };
    const idx = shape.map(() => 0);
    for (let i = 0; i < y.data.length; i++) {
      let r = i;
      for (let d = shape.length - 1; d >= 0; d--) {
        idx[d] = r % shape[d];
        r = Math.floor(r / shape[d]);
      }
      y.data[i] = at(a, idx) + at(b, idx);
    }
    return y;
  }

  silu = (x: Arr): Arr => ({ shape: x.shape, data: x.data.map((v) => v / (1 + Math.exp(-v))) });
  relu = (x: Arr): Arr => ({ shape: x.shape, data: x.data.map((v) => Math.max(v, 0)) });
  reshape = (x: Arr, shape: readonly number[]): Arr => ({ shape: [...shape], data: x.data });

  concatChannels(xs: readonly Arr[]): Arr {
    const [n, , ...rest] = xs[0].shape, s = size(rest);
    const ct = xs.reduce((c, x) => c + x.shape[1], 0);
    const y = arr([n, ct, ...rest]);
    for (let b = 0; b < n; b++) {
      let c0 = 0;
      for (const x of xs) {
        const c = x.shape[1];
        y.data.set(x.data.subarray(b * c * s, (b + 1) * c * s), (b * ct + c0) * s);
        c0 += c;
      }
    }
    return y;
  }

  padBottomRight(x: Arr): Arr {
    const [n, c, h, w] = x.shape;
    const y = arr([n, c, h + 1, w + 1]);
    for (let p = 0; p < n * c; p++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) y.data[(p * (h + 1) + i) * (w + 1) + j] = x.data[(p * h + i) * w + j];
      }
    }
    return y;
  }

  upsampleNearest2x(x: Arr): Arr {
    const [n, c, h, w] = x.shape;
    const y = arr([n, c, 2 * h, 2 * w]);
    for (let p = 0; p < n * c; p++) {
      for (let i = 0; i < 2 * h; i++) {
        for (let j = 0; j < 2 * w; j++) {
          y.data[(p * 2 * h + i) * 2 * w + j] = x.data[(p * h + (i >> 1)) * w + (j >> 1)];
        }
      }
    }
    return y;
  }

  meanSpatial(x: Arr): Arr {
    const [n, c, h, w] = x.shape;
    const y = arr([n, c]);
    for (let p = 0; p < n * c; p++) {
      let s = 0;
      for (let i = 0; i < h * w; i++) s += x.data[p * h * w + i];
      y.data[p] = s / (h * w);
    }
    return y;
  }

  dropout(x: Arr, p: number): Arr {
    const site = this.site++;
    if (!this.opts.train || p === 0) return x;
    const words = randomBitsCpu(x.data.length, this.opts.keyWords!, site);
    const threshold = bernoulliThreshold(p), scale = Math.fround(1 / (1 - p));
    return { shape: x.shape, data: x.data.map((v, i) => ((words[i] >>> 8) < threshold ? 0 : v * scale)) };
  }
}

/** diffusers' get_timestep_embedding in float64, given float32 frequencies and float32 phases (as torch). */
export function timestepEmbeddingRef(
  t: ArrayLike<number>,
  dim: number,
  flip: boolean,
  shift: number,
): Float64Array {
  const half = dim / 2;
  const out = new Float64Array(t.length * dim);
  for (let n = 0; n < t.length; n++) {
    for (let k = 0; k < half; k++) {
      const freq = Math.fround(Math.exp(-Math.log(10000) * k / (half - shift)));
      const phase = Math.fround(Math.fround(t[n]) * freq);
      const [a, b] = flip ? [Math.cos(phase), Math.sin(phase)] : [Math.sin(phase), Math.cos(phase)];
      out[n * dim + k] = a;
      out[n * dim + half + k] = b;
    }
  }
  return out;
}

/**
 * diffusers UNet2DModel's parameters (name -> shape), transcribed from its constructors (UNet2DModel,
 * get_down_block/get_up_block, DownBlock2D, AttnDownBlock2D, UNetMidBlock2D, UpBlock2D, AttnUpBlock2D,
 * ResnetBlock2D, Attention, Downsample2D name "op" -> conv, Upsample2D), independently of src/nn.
 */
export function diffusersUNetParams(cfg: UNetConfig, deprecatedAttention = false): Map<string, number[]> {
  const P = new Map<string, number[]>();
  const conv = (n: string, co: number, ci: number, k: number) => {
    P.set(`${n}.weight`, [co, ci, k, k]);
    P.set(`${n}.bias`, [co]);
  };
  const lin = (n: string, o: number, i: number) => {
    P.set(`${n}.weight`, [o, i]);
    P.set(`${n}.bias`, [o]);
  };
  const gn = (n: string, c: number) => {
    P.set(`${n}.weight`, [c]);
    P.set(`${n}.bias`, [c]);
  };
  const boc = cfg.block_out_channels, last = boc.length - 1, c0 = boc[0], temb = 4 * c0;
  const resnet = (n: string, ci: number, co: number) => {
    gn(`${n}.norm1`, ci);
    conv(`${n}.conv1`, co, ci, 3);
    lin(`${n}.time_emb_proj`, co, temb);
    gn(`${n}.norm2`, co);
    conv(`${n}.conv2`, co, co, 3);
    if (ci !== co) conv(`${n}.conv_shortcut`, co, ci, 1);
  };
  const attn = (n: string, c: number) => {
    gn(`${n}.group_norm`, c);
    const names = deprecatedAttention
      ? ["query", "key", "value", "proj_attn"]
      : ["to_q", "to_k", "to_v", "to_out.0"];
    for (const p of names) lin(`${n}.${p}`, c, c);
  };
  conv("conv_in", c0, cfg.in_channels, 3);
  lin("time_embedding.linear_1", temb, c0);
  lin("time_embedding.linear_2", temb, temb);
  let out = c0;
  cfg.down_block_types.forEach((type, i) => {
    const inp = out;
    out = boc[i];
    for (let j = 0; j < cfg.layers_per_block; j++) {
      resnet(`down_blocks.${i}.resnets.${j}`, j === 0 ? inp : out, out);
      if (type === "AttnDownBlock2D") attn(`down_blocks.${i}.attentions.${j}`, out);
    }
    if (i !== last) conv(`down_blocks.${i}.downsamplers.0.conv`, out, out, 3);
  });
  resnet("mid_block.resnets.0", boc[last], boc[last]);
  attn("mid_block.attentions.0", boc[last]);
  resnet("mid_block.resnets.1", boc[last], boc[last]);
  const rev = [...boc].reverse();
  out = rev[0];
  cfg.up_block_types.forEach((type, i) => {
    const prev = out;
    out = rev[i];
    const inp = rev[Math.min(i + 1, last)];
    const layers = cfg.layers_per_block + 1;
    for (let j = 0; j < layers; j++) {
      const skip = j === layers - 1 ? inp : out;
      const rin = j === 0 ? prev : out;
      resnet(`up_blocks.${i}.resnets.${j}`, rin + skip, out);
      if (type === "AttnUpBlock2D") attn(`up_blocks.${i}.attentions.${j}`, out);
    }
    if (i !== last) conv(`up_blocks.${i}.upsamplers.0.conv`, out, out, 3);
  });
  gn("conv_norm_out", c0);
  conv("conv_out", cfg.out_channels, c0, 3);
  return P;
}

/**
 * Central differences of L(p) = sum(dy * f(p)) with respect to the coordinates `coords` of the float64
 * array `p` (modified in place during the evaluation, restored after). The step is small so that no
 * ReLU kink is crossed (float64 keeps the quotient accurate).
 */
export function finiteDiffAt(
  f: () => ArrayLike<number>,
  p: Float64Array,
  coords: readonly number[],
  dy: ArrayLike<number>,
  h = 1e-7,
): Float64Array {
  const dot = (y: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < y.length; i++) s += dy[i] * y[i];
    return s;
  };
  return Float64Array.from(coords, (i) => {
    const x = p[i];
    p[i] = x + h;
    const a = dot(f());
    p[i] = x - h;
    const b = dot(f());
    p[i] = x;
    return (a - b) / (2 * h);
  });
}

/** `count` distinct coordinates in [0, n) (all of them when n <= count), from a host PRNG. */
export function someCoords(n: number, count: number, r: () => number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const s = new Set<number>();
  while (s.size < count) s.add(Math.floor(r() * n));
  return [...s].sort((a, b) => a - b);
}

// ---------------------------------------------------------------- GPU vs reference checks

/** One network checked end to end: GPU forward vs float64 reference, then GPU gradients (input and chosen
 * parameters) vs central differences of the reference. */
export interface NetCheck {
  what: string;
  seed: number;
  gpu: Gpu;
  store: ParamStore;
  /** The store's values in float64 (the reference reads these; differences perturb them in place). */
  host: Map<string, Float64Array>;
  input: Float64Array;
  inputShape: number[];
  gpuForward: (x: Var) => Var;
  cpuForward: (ops: CpuOps, x: Arr) => Arr;
  cpuOptions?: CpuOptions;
  /** Parameters whose gradients are checked (a few coordinates each). */
  check: string[];
  forwardTol: number;
  gradTol: number;
  /** Coordinates checked per parameter (default 4) and of the input (default 8). */
  coords?: number;
  inputCoords?: number;
  /** Parameters whose gradient is exactly zero in theory (skipped by the reached-by-gradient check). */
  zeroGradAllowed?: RegExp;
}

export function hostParams(inits: readonly ParamInit[]): Map<string, Float64Array> {
  return new Map(inits.map((p) => [p.name, Float64Array.from(p.init)]));
}

export async function checkNet(c: NetCheck): Promise<void> {
  const { gpu, store, host, seed } = c;
  const r = rng(seed ^ 0x5bd1e995);
  const cpu = () => {
    const ops = new CpuOps(host, c.cpuOptions);
    const y = c.cpuForward(ops, { shape: c.inputShape, data: c.input });
    const unused = [...host.keys()].filter((n) => !ops.used.has(n));
    if (unused.length) throw new Error(`${c.what}: reference left parameters unused: ${unused.join(", ")}`);
    return y;
  };
  const ref = cpu();
  await scopeAsync(async () => {
    store.zeroGrad();
    const x = leaf(gpu.tensor(f32(c.input), c.inputShape));
    const y = c.gpuForward(x);
    if (y.shape.join() !== ref.shape.join()) {
      throw new Error(`${c.what}: output [${y.shape}], reference [${ref.shape}]`);
    }
    assertClose(await gpu.read(y.value), ref.data, c.forwardTol, `${c.what} forward seed=${seed}`);
    const dy = randArray(ref.data.length, seed + 11);
    backward(y, gpu.tensor(f32(dy), y.shape));
    const xs = someCoords(c.input.length, c.inputCoords ?? 8, r);
    const gx = await gpu.read(x.grad!);
    const fdx = finiteDiffAt(() => cpu().data, c.input, xs, dy);
    assertClose(xs.map((i) => gx[i]), fdx, c.gradTol, `${c.what} d/d input seed=${seed}`);
    for (const name of c.check) {
      const p = host.get(name)!;
      const at = someCoords(p.length, c.coords ?? 4, r);
      const g = await store.readGrad(name);
      const fd = finiteDiffAt(() => cpu().data, p, at, dy);
      assertClose(at.map((i) => g[i]), fd, c.gradTol, `${c.what} d/d ${name} seed=${seed}`);
    }
    // every parameter is reached by the gradient (no branch silently cut off)
    const grads = store.split(await gpu.read(store.grads));
    const dead = store.names.filter((name) =>
      !c.zeroGradAllowed?.test(name) && grads.get(name)!.every((v) => v === 0)
    );
    if (dead.length) throw new Error(`${c.what}: zero gradient for ${dead.join(", ")} seed=${seed}`);
    x.zeroGrad();
  });
}
