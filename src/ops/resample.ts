/**
 * Integer-factor resampling of NCHW images (shaders/resample.wgsl): nearest 2x upsampling and average
 * pooling with kernel = stride = k, each with its backward. The pair are adjoints of each other up to a
 * scale, so one template with two modes (POOL, EXPAND) serves all four.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32, wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/resample.wgsl" with { type: "text" };

function image(op: string, x: Tensor): [number, number, number, number] {
  if (x.shape.length !== 4) throw new ShapeError(op, `input must be [N,C,H,W], got [${x.shape}]`);
  return x.shape as unknown as [number, number, number, number];
}

/** out [N,C,oh,ow] from x [N,C,ih,iw] by POOL or EXPAND with factor k (see the template). */
function resample(
  gpu: Gpu,
  mode: "POOL" | "EXPAND",
  x: Tensor,
  k: number,
  oh: number,
  ow: number,
  scale: number,
) {
  const [n, c, ih, iw] = x.shape;
  const total = n * c * oh * ow;
  const consts = { TOTAL: total, OH: oh, OW: ow, IH: ih, IW: iw, K: k, SCALE: f32(scale) };
  const key = `resample:${mode}:` + Object.entries(consts).map(([a, b]) => `${a}=${b}`).join(",");
  const kernel = gpu.kernel(key, () => wgsl(template, { ...consts, [mode]: true }));
  const out = gpu.empty([n, c, oh, ow]);
  gpu.dispatch(kernel, [x, out], Math.ceil(total / 64));
  return out;
}

/** Nearest-neighbour 2x upsampling: [N,C,H,W] -> [N,C,2H,2W]. */
export function upsampleNearest2x(gpu: Gpu, x: Tensor): Tensor {
  const [, , h, w] = image("upsampleNearest2x", x);
  return resample(gpu, "EXPAND", x, 2, 2 * h, 2 * w, 1);
}

/** Backward of upsampleNearest2x: each input pixel gets the sum of its 2x2 block of dy. */
export function upsampleNearest2xBackward(gpu: Gpu, dy: Tensor): Tensor {
  const [, , h, w] = image("upsampleNearest2xBackward", dy);
  if (h % 2 || w % 2) {
    throw new ShapeError("upsampleNearest2xBackward", `dy [${dy.shape}] is not 2x upsampled`);
  }
  return resample(gpu, "POOL", dy, 2, h / 2, w / 2, 1);
}

/** Average pooling with kernel = stride = k: [N,C,H,W] -> [N,C,floor(H/k),floor(W/k)]. */
export function avgPool2d(gpu: Gpu, x: Tensor, k = 2): Tensor {
  const [, , h, w] = image("avgPool2d", x);
  if (!Number.isInteger(k) || k < 1 || k > h || k > w) {
    throw new ShapeError("avgPool2d", `kernel ${k} does not fit [${x.shape}]`);
  }
  return resample(gpu, "POOL", x, k, Math.floor(h / k), Math.floor(w / k), 1 / (k * k));
}

/** Backward of avgPool2d: dy spread evenly over each block; pixels no block covers get 0. */
export function avgPool2dBackward(gpu: Gpu, dy: Tensor, xShape: readonly number[], k = 2): Tensor {
  const [n, c, oh, ow] = image("avgPool2dBackward", dy);
  const [xn, xc, h, w] = xShape;
  if (xShape.length !== 4 || xn !== n || xc !== c || Math.floor(h / k) !== oh || Math.floor(w / k) !== ow) {
    throw new ShapeError("avgPool2dBackward", `dy [${dy.shape}] does not pool [${xShape}] by ${k}`);
  }
  return resample(gpu, "EXPAND", dy, k, h, w, 1 / (k * k));
}
