/**
 * Channel concat, slice and zero-pad of NCHW (or [N, C]) tensors: one gather kernel family
 * (shaders/channels.wgsl) in which each output channel comes from one input segment or is zero.
 * Concat of k inputs is one dispatch (split only past the adapter's storage-buffer limit).
 */
import type { Gpu } from "../gpu/context.ts";
import { wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/channels.wgsl" with { type: "text" };

/** Output channels [dst, dst + count) come from input channels [src, src + count) of an input with cin. */
interface Segment {
  t: Tensor;
  cin: number;
  src: number;
  dst: number;
  count: number;
}

/** Batch and per-channel size of an [N, C, ...] tensor. */
function dims(op: string, t: Tensor): { n: number; c: number; s: number } {
  if (t.shape.length < 2) throw new ShapeError(op, `expected [N, C, ...], got [${t.shape}]`);
  const [n, c, ...rest] = t.shape;
  return { n, c, s: rest.reduce((a, b) => a * b, 1) };
}

/** Write output channels [lo, hi) of `out` ([n, cout, s]) from the segments inside that range. */
function gather(
  gpu: Gpu,
  out: Tensor,
  n: number,
  cout: number,
  s: number,
  lo: number,
  hi: number,
  segs: Segment[],
) {
  const decls = segs.map((_, k) => `@group(0) @binding(${k}) var<storage, read> in${k}: array<f32>;`);
  decls.push(`@group(0) @binding(${segs.length}) var<storage, read_write> out: array<f32>;`);
  const select = segs.map((g, k) => {
    const cond = `c >= ${g.dst}u && c < ${g.dst + g.count}u`;
    return `  ${
      k ? "else " : ""
    }if (${cond}) { v = in${k}[(n * ${g.cin}u + c - ${g.dst}u + ${g.src}u) * S + s]; }`;
  });
  const segKey = segs.map((g) => `${g.cin}/${g.src}/${g.dst}/${g.count}`).join(";");
  const key = `channels:N=${n},S=${s},COUT=${cout},LO=${lo},HI=${hi},segs=${segKey}`;
  const kernel = gpu.kernel(key, () =>
    wgsl(template, {
      DECLS: decls.join("\n"),
      SELECT: select.join("\n"),
      N: n,
      S: s,
      COUT: cout,
      LO: lo,
      WIDTH: hi - lo,
    }));
  gpu.dispatch(kernel, [...segs.map((g) => g.t), out], Math.ceil((n * (hi - lo) * s) / 64));
}

/** Concatenate [N, Ci, ...] tensors (same N and trailing dims) along the channel axis. */
export function concatChannels(gpu: Gpu, xs: readonly Tensor[]): Tensor {
  if (xs.length === 0) throw new ShapeError("concatChannels", "no inputs");
  const first = dims("concatChannels", xs[0]);
  const rest = xs[0].shape.slice(2).join();
  let cout = 0;
  const segs: Segment[] = xs.map((t) => {
    const d = dims("concatChannels", t);
    if (d.n !== first.n || t.shape.slice(2).join() !== rest) {
      throw new ShapeError(
        "concatChannels",
        `input [${t.shape}] does not match [${xs[0].shape}] outside channels`,
      );
    }
    const seg = { t, cin: d.c, src: 0, dst: cout, count: d.c };
    cout += d.c;
    return seg;
  });
  const out = gpu.empty([first.n, cout, ...xs[0].shape.slice(2)]);
  // one binding per input plus the output, within the adapter's storage-buffer limit
  const perDispatch = Math.max(1, (gpu.adapter.limits.maxStorageBuffersPerShaderStage ?? 8) - 1);
  for (let k = 0; k < segs.length; k += perDispatch) {
    const part = segs.slice(k, k + perDispatch);
    const last = part[part.length - 1];
    gather(gpu, out, first.n, cout, first.s, part[0].dst, last.dst + last.count, part);
  }
  return out;
}

/** Channels [start, start + count) of an [N, C, ...] tensor. */
export function sliceChannels(gpu: Gpu, x: Tensor, start: number, count: number): Tensor {
  const d = dims("sliceChannels", x);
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 1 || start + count > d.c) {
    throw new ShapeError("sliceChannels", `channels [${start}, ${start + count}) outside [0, ${d.c})`);
  }
  const out = gpu.empty([d.n, count, ...x.shape.slice(2)]);
  gather(gpu, out, d.n, count, d.s, 0, count, [{ t: x, cin: d.c, src: start, dst: 0, count }]);
  return out;
}

/** Place x ([N, Cx, ...]) at channels [start, start + Cx) of a zero tensor with `channels` channels
 * (the backward of sliceChannels). */
export function padChannels(gpu: Gpu, x: Tensor, start: number, channels: number): Tensor {
  const d = dims("padChannels", x);
  if (!Number.isInteger(start) || start < 0 || start + d.c > channels) {
    throw new ShapeError("padChannels", `channels [${start}, ${start + d.c}) outside [0, ${channels})`);
  }
  const out = gpu.empty([d.n, channels, ...x.shape.slice(2)]);
  gather(gpu, out, d.n, channels, d.s, 0, channels, [{ t: x, cin: d.c, src: 0, dst: start, count: d.c }]);
  return out;
}
