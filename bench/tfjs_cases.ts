/**
 * The cases of the TF.js comparison: the same computation on the same data for both sides, ours in NCHW /
 * OIHW, TF.js in its native NHWC / HWIO. Each side keeps its last result so the two can be cross-checked.
 */
import type * as TF from "@tensorflow/tfjs-core";
import type { Gpu } from "../src/gpu/context.ts";
import { scope, type Tensor } from "../src/tensor.ts";
import { matmul } from "../src/ops/matmul.ts";
import { conv2d, conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight } from "../src/ops/conv2d.ts";
import { relu, reluBackward } from "../src/ops/elementwise.ts";
import { hwioToOihw, nchwToNhwc, nhwcToNchw, oihwToHwio, uniform } from "./tfjs_layout.ts";

export type Tf = typeof TF;

/** One side of a case. `step` records one iteration without waiting. */
export interface Side {
  step(): void;
  /** Wait until everything recorded so far has run. */
  sync(): Promise<void>;
  /** The last iteration's checked output, in our layout. */
  result(): Promise<Float32Array>;
  dispose(): void;
}

export interface Case {
  name: string;
  /** Multiply-adds per iteration (GFLOP/s counts 2 per MAC). */
  macs: number;
  ours(gpu: Gpu): Side;
  tfjs(tf: Tf): Side;
}

// ---------------------------------------------------------------- sides

function ourSide(gpu: Gpu, inputs: Tensor[], compute: () => Tensor): Side {
  const tiny = gpu.zeros([1]);
  let last: Tensor | null = null;
  return {
    step() {
      last?.dispose();
      last = scope(compute);
    },
    // reading one float waits for the whole queue without copying the result
    sync: async () => void await gpu.read(tiny),
    result: () => gpu.read(last!),
    dispose() {
      for (const t of [...inputs, tiny, last]) t?.dispose();
    },
  };
}

function tfSide(
  tf: Tf,
  inputs: TF.Tensor[],
  compute: () => TF.Tensor,
  toOurs: (a: Float32Array) => Float32Array = (a) => a,
): Side {
  let last: TF.Tensor | null = null;
  return {
    step() {
      last?.dispose();
      last = tf.tidy(compute);
    },
    sync: async () => void await last!.data(),
    result: async () => toOurs(await last!.data() as Float32Array),
    dispose() {
      tf.dispose([...inputs, ...(last ? [last] : [])]);
    },
  };
}

// ---------------------------------------------------------------- matmul

export function matmulCase(m: number, k: number, n: number): Case {
  const a = uniform(m * k, 1), b = uniform(k * n, 2);
  return {
    name: `matmul ${m}x${k}x${n}`,
    macs: m * k * n,
    ours(gpu) {
      const ta = gpu.tensor(a, [m, k]), tb = gpu.tensor(b, [k, n]);
      return ourSide(gpu, [ta, tb], () => matmul(gpu, ta, tb));
    },
    tfjs(tf) {
      const ta = tf.tensor2d(a, [m, k]), tb = tf.tensor2d(b, [k, n]);
      return tfSide(tf, [ta, tb], () => tf.matMul(ta, tb));
    },
  };
}

// ---------------------------------------------------------------- conv2d

/** A 3x3 (or 1x1) conv layer: batch, input channels and size, output channels, stride; padding k/2. */
export interface ConvShape {
  n: number;
  ci: number;
  h: number;
  w: number;
  co: number;
  k: 1 | 3;
  s: 1 | 2;
}

const outSize = (size: number, c: ConvShape) => Math.floor((size + 2 * (c.k >> 1) - c.k) / c.s) + 1;
const convMacs = (c: ConvShape) => c.n * c.co * outSize(c.h, c) * outSize(c.w, c) * c.ci * c.k * c.k;
const label = (c: ConvShape) =>
  `${c.n}x${c.h}x${c.w}x${c.ci}->${c.co}${c.s === 2 ? ` s2 (${outSize(c.h, c)}x${outSize(c.w, c)})` : ""}`;

/** Host data for one conv layer in both layouts. */
function convData(c: ConvShape, seed: number) {
  const oh = outSize(c.h, c), ow = outSize(c.w, c);
  const x = uniform(c.n * c.ci * c.h * c.w, seed);
  const w = uniform(c.co * c.ci * c.k * c.k, seed + 1, 1 / Math.sqrt(c.ci * c.k * c.k));
  const b = uniform(c.co, seed + 2, 0.1);
  const dy = uniform(c.n * c.co * oh * ow, seed + 3);
  return {
    oh,
    ow,
    x,
    w,
    b,
    dy,
    xT: nchwToNhwc(x, c.n, c.ci, c.h, c.w),
    wT: oihwToHwio(w, c.co, c.ci, c.k),
    dyT: nchwToNhwc(dy, c.n, c.co, oh, ow),
  };
}

/** TF.js conv attributes equal to our stride s, padding k/2 (floor rounding for stride 2 on even sizes). */
const tfConv = (c: ConvShape) => ({ strides: c.s, pad: c.k >> 1, dimRoundingMode: "floor" as const });

export function convForwardCase(c: ConvShape): Case {
  const d = convData(c, 10);
  return {
    name: `conv fwd ${label(c)}`,
    macs: convMacs(c),
    ours(gpu) {
      const x = gpu.tensor(d.x, [c.n, c.ci, c.h, c.w]), w = gpu.tensor(d.w, [c.co, c.ci, c.k, c.k]);
      const b = gpu.tensor(d.b, [c.co]);
      return ourSide(gpu, [x, w, b], () => conv2d(gpu, x, w, b, { stride: c.s, padding: c.k >> 1 }));
    },
    tfjs(tf) {
      const x = tf.tensor4d(d.xT, [c.n, c.h, c.w, c.ci]), w = tf.tensor4d(d.wT, [c.k, c.k, c.ci, c.co]);
      const b = tf.tensor1d(d.b);
      const a = tfConv(c);
      return tfSide(
        tf,
        [x, w, b],
        () => tf.fused.conv2d({ x, filter: w, bias: b, ...a }),
        (y) => nhwcToNchw(y, c.n, c.co, d.oh, d.ow),
      );
    },
  };
}

export function convInputGradCase(c: ConvShape): Case {
  const d = convData(c, 20);
  return {
    name: `conv dx ${label(c)}`,
    macs: convMacs(c),
    ours(gpu) {
      const dy = gpu.tensor(d.dy, [c.n, c.co, d.oh, d.ow]), w = gpu.tensor(d.w, [c.co, c.ci, c.k, c.k]);
      const xShape = [c.n, c.ci, c.h, c.w];
      return ourSide(
        gpu,
        [dy, w],
        () => conv2dBackwardInput(gpu, dy, w, xShape, { stride: c.s, padding: c.k >> 1 }),
      );
    },
    tfjs(tf) {
      const dy = tf.tensor4d(d.dyT, [c.n, d.oh, d.ow, c.co]), w = tf.tensor4d(d.wT, [c.k, c.k, c.ci, c.co]);
      const a = tfConv(c);
      return tfSide(
        tf,
        [dy, w],
        () => tf.conv2dTranspose(dy, w, [c.n, c.h, c.w, c.ci], a.strides, a.pad, a.dimRoundingMode),
        (dx) => nhwcToNchw(dx, c.n, c.ci, c.h, c.w),
      );
    },
  };
}

export function convWeightGradCase(c: ConvShape): Case {
  const d = convData(c, 30);
  return {
    name: `conv dW ${label(c)}`,
    macs: convMacs(c),
    ours(gpu) {
      const x = gpu.tensor(d.x, [c.n, c.ci, c.h, c.w]), dy = gpu.tensor(d.dy, [c.n, c.co, d.oh, d.ow]);
      const wShape = [c.co, c.ci, c.k, c.k];
      return ourSide(
        gpu,
        [x, dy],
        () => conv2dBackwardWeight(gpu, x, dy, wShape, { stride: c.s, padding: c.k >> 1 }),
      );
    },
    tfjs(tf) {
      const x = tf.tensor4d(d.xT, [c.n, c.h, c.w, c.ci]), dy = tf.tensor4d(d.dyT, [c.n, d.oh, d.ow, c.co]);
      // the filter gradient is not in tfjs-core's public API: run the kernel that tf.grad uses
      const attrs = { ...tfConv(c), dataFormat: "NHWC", filterShape: [c.k, c.k, c.ci, c.co] };
      return tfSide(
        tf,
        [x, dy],
        () => tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, attrs) as TF.Tensor,
        (dw) => hwioToOihw(dw, c.co, c.ci, c.k),
      );
    },
  };
}

// ---------------------------------------------------------------- a UNet-like encoder, forward + backward

/** conv3x3 + bias + ReLU layers, backward from a fixed output gradient r (the loss sum(r * out)). */
export function stackCase(layers: ConvShape[]): Case {
  const data = layers.map((c, i) => convData(c, 100 + 10 * i));
  const last = layers[layers.length - 1], lastD = data[data.length - 1];
  const first = layers[0];
  const r = uniform(last.n * last.co * lastD.oh * lastD.ow, 7);
  const rT = nchwToNhwc(r, last.n, last.co, lastD.oh, lastD.ow);
  // forward + weight gradients everywhere + input gradients except into the (constant) image
  const macs = layers.reduce((s, c, i) => s + convMacs(c) * (i === 0 ? 2 : 3), 0);
  return {
    name: `UNet-like stack fwd+bwd (${layers.length} convs)`,
    macs,
    ours(gpu) {
      const x = gpu.tensor(data[0].x, [first.n, first.ci, first.h, first.w]);
      const seed = gpu.tensor(r, [last.n, last.co, lastD.oh, lastD.ow]);
      const ws = layers.map((c, i) => gpu.tensor(data[i].w, [c.co, c.ci, c.k, c.k]));
      const bs = layers.map((c, i) => gpu.tensor(data[i].b, [c.co]));
      const opts = layers.map((c) => ({ stride: c.s, padding: c.k >> 1 }));
      return ourSide(gpu, [x, seed, ...ws, ...bs], () => {
        const acts = [x];
        for (let i = 0; i < layers.length; i++) {
          acts.push(relu(gpu, conv2d(gpu, acts[i], ws[i], bs[i], opts[i])));
        }
        let g = seed, dw0: Tensor | null = null;
        for (let i = layers.length - 1; i >= 0; i--) {
          const dpre = reluBackward(gpu, acts[i + 1], g); // y > 0 exactly where the pre-activation is
          conv2dBackwardBias(gpu, dpre);
          const dw = conv2dBackwardWeight(gpu, acts[i], dpre, ws[i].shape, opts[i]);
          if (i > 0) g = conv2dBackwardInput(gpu, dpre, ws[i], acts[i].shape, opts[i]);
          else dw0 = dw;
        }
        return dw0!;
      });
    },
    tfjs(tf) {
      registerReluGradient(tf);
      const x = tf.tensor4d(data[0].xT, [first.n, first.h, first.w, first.ci]);
      const rt = tf.tensor4d(rT, [last.n, lastD.oh, lastD.ow, last.co]);
      const ws = layers.map((c, i) => tf.tensor4d(data[i].wT, [c.k, c.k, c.ci, c.co]));
      const bs = layers.map((_, i) => tf.tensor1d(data[i].b));
      const loss = (...params: TF.Tensor[]) => {
        let h = x as TF.Tensor4D;
        layers.forEach((c, i) => {
          const filter = params[i] as TF.Tensor4D, bias = params[layers.length + i];
          // under tf.grads TF.js only fuses linear activations, so conv+bias fused, then ReLU
          h = tf.relu(tf.fused.conv2d({ x: h, filter, bias, ...tfConv(c) }));
        });
        return h;
      };
      return tfSide(
        tf,
        [x, rt, ...ws, ...bs],
        // seeding with dy = r needs no registered Sum/Mul gradients (tfjs-core ships them separately,
        // in an ES module that Deno cannot load) and matches our side exactly
        () => tf.grads(loss)([...ws, ...bs], rt)[0],
        (dw) => hwioToOihw(dw, first.co, first.ci, first.k),
      );
    },
  };
}

/**
 * tfjs-core registers its gradient functions from an ES module with extensionless imports that Deno
 * cannot load (dist/register_all_gradients.js), so the one the stack needs is registered here, as
 * tfjs-core defines it (gradients/Relu_grad.ts). Fused conv2d+bias carries its own gradient.
 */
function registerReluGradient(tf: Tf): void {
  if (tf.getGradient("Relu")) return;
  tf.registerGradient({
    kernelName: "Relu",
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as TF.Tensor, tf.cast(tf.step(saved[0]), "float32")) }),
  });
}
