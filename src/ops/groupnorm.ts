/**
 * GroupNorm over NCHW (or [N, C]) with affine gamma/beta, PyTorch semantics (biased variance, eps inside
 * the square root). The forward saves mean and rstd per (n, group), llm.c style, which is all the backward
 * needs besides x. Both directions are two barrier-free dispatches on the software adapter (statistics
 * from strided partial sums, recomputed by the elementwise pass), and three on GPUs, where many more
 * partial sums are worth a separate finalize pass. dgamma/dbeta are reductions over per-channel partial
 * sums, never float atomics. Kernels: shaders/groupnorm.wgsl.
 */
import type { Gpu } from "../gpu/context.ts";
import { type Consts, f32, wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/groupnorm.wgsl" with { type: "text" };

export type GroupNormVariant = "software" | "gpu";

/** Tests set `force` to exercise both variants on one adapter; null chooses by adapter. */
export const groupNormVariant: { force: GroupNormVariant | null } = { force: null };

interface Plan {
  consts: Consts;
  rows: number;
  /** Parts per row (forward) and per channel (backward), elementwise chunks per row. */
  p: number;
  p2: number;
  nch: number;
  fused: boolean;
}

/** How many strided parts to split `rows` reductions of `len` into: enough invocations in total, but at
 * least `minPer` elements per part. */
function parts(rows: number, len: number, target: number, minPer: number): number {
  return Math.max(1, Math.min(Math.ceil(target / rows), Math.floor(len / minPer)));
}

function plan(gpu: Gpu, op: string, shape: readonly number[], groups: number, eps: number): Plan {
  if (shape.length !== 4 && shape.length !== 2) {
    throw new ShapeError(op, `x must be [N,C,H,W] or [N,C], got [${shape}]`);
  }
  const [n, c] = shape;
  const hw = shape.length === 4 ? shape[2] * shape[3] : 1;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new ShapeError(op, `${c} channels do not split into ${groups} groups`);
  }
  const variant = groupNormVariant.force ?? (gpu.adapter.isSoftware ? "software" : "gpu");
  const cpg = c / groups, m = cpg * hw, rows = n * groups;
  // vec4 loads and stores: rows (n, group) need M % 4 == 0, channels (BWD_PARTIAL) HW % 4 == 0
  const row4 = m % 4 === 0, ch4 = hw % 4 === 0;
  const ml = row4 ? m / 4 : m, hwl = ch4 ? hw / 4 : hw;
  // software: a few thousand invocations keep 2-16 threads busy, and few parts make the fused recompute
  // cheap; GPUs want tens of thousands of invocations with short serial loops.
  const sw = variant === "software";
  const target = sw ? 2048 : 32768;
  const p = parts(rows, ml, target, sw ? 64 : 16);
  const p2 = parts(n * c, hwl, target, sw ? 64 : 16);
  const nch = parts(rows, ml, target, sw ? 32 : 4);
  // the fused backward binds 9 storage buffers
  const fused = sw && (gpu.adapter.limits.maxStorageBuffersPerShaderStage ?? 8) >= 9;
  const consts: Consts = {
    N: n,
    C: c,
    HW: hw,
    G: groups,
    CPG: cpg,
    M: m,
    ML: ml,
    HWL: hwl,
    ROW4: row4,
    CH4: ch4,
    ROWS: rows,
    P: p,
    NCH: nch,
    P2: p2,
    EPS: f32(eps),
    FUSED: fused,
  };
  return { consts, rows, p, p2, nch, fused };
}

function kernel(gpu: Gpu, section: string, plan: Plan, extra: Consts = {}) {
  const { ROW4, CH4 } = plan.consts;
  // the element type of the section's loops: per channel for BWD_PARTIAL, per row elsewhere
  const vec4 = section === "BWD_PARTIAL" ? CH4 : ROW4;
  const consts = { ...plan.consts, ...extra, [section]: true, VEC4: vec4, SPLIT: vec4 && !CH4 };
  const key = "groupnorm:" + Object.entries(consts).map(([k, v]) => `${k}=${v}`).join(",");
  return gpu.kernel(key, () => wgsl(template, consts));
}

function checkVec(op: string, name: string, t: Tensor, c: number): void {
  if (t.size !== c) throw new ShapeError(op, `${name} must have ${c} values, got [${t.shape}]`);
}

const wg = (invocations: number) => Math.ceil(invocations / 64);

/** y = (x - mean) * rstd * gamma + beta per (n, group); mean and rstd are [N, G]. */
export function groupNorm(
  gpu: Gpu,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  groups: number,
  eps = 1e-5,
): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const pl = plan(gpu, "groupNorm", x.shape, groups, eps);
  const [n, c] = x.shape;
  checkVec("groupNorm", "gamma", gamma, c);
  checkVec("groupNorm", "beta", beta, c);
  const part = gpu.empty([pl.rows * pl.p, 4]); // vec3f parts, 16-byte stride
  const y = gpu.empty(x.shape), mean = gpu.empty([n, groups]), rstd = gpu.empty([n, groups]);
  gpu.dispatch(kernel(gpu, "FWD_PARTIAL", pl), [x, part], wg(pl.rows * pl.p));
  const norm = kernel(gpu, "FWD_NORM", pl, { ROW_STATS: pl.fused });
  if (pl.fused) {
    gpu.dispatch(norm, [x, gamma, beta, y, part, mean, rstd], wg(pl.rows * pl.nch));
  } else {
    gpu.dispatch(kernel(gpu, "FWD_FINAL", pl, { ROW_STATS: true }), [part, mean, rstd], wg(pl.rows));
    gpu.dispatch(norm, [x, gamma, beta, y, mean, rstd], wg(pl.rows * pl.nch));
  }
  part.dispose();
  return { y, mean, rstd };
}

/** Gradients of groupNorm given dy and the saved mean, rstd. */
export function groupNormBackward(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  mean: Tensor,
  rstd: Tensor,
  gamma: Tensor,
  groups: number,
): { dx: Tensor; dgamma: Tensor; dbeta: Tensor } {
  const pl = plan(gpu, "groupNormBackward", x.shape, groups, 1e-5);
  const [n, c] = x.shape;
  if (dy.shape.join() !== x.shape.join()) {
    throw new ShapeError("groupNormBackward", `dy [${dy.shape}] and x [${x.shape}] differ`);
  }
  checkVec("groupNormBackward", "gamma", gamma, c);
  checkVec("groupNormBackward", "mean", mean, pl.rows);
  checkVec("groupNormBackward", "rstd", rstd, pl.rows);
  const bpart = gpu.empty([n * c * pl.p2, 2]);
  const dx = gpu.empty(x.shape), dgamma = gpu.empty([c]), dbeta = gpu.empty([c]);
  gpu.dispatch(kernel(gpu, "BWD_PARTIAL", pl), [dy, x, mean, rstd, bpart], wg(n * c * pl.p2));
  const dxk = kernel(gpu, "BWD_DX", pl, { CHANNEL_SUMS: pl.fused });
  if (pl.fused) {
    gpu.dispatch(dxk, [dy, x, mean, rstd, gamma, dx, bpart, dgamma, dbeta], wg(pl.rows * pl.nch + c));
  } else {
    const coef = gpu.empty([pl.rows, 2]);
    gpu.dispatch(
      kernel(gpu, "BWD_COEF", pl, { CHANNEL_SUMS: true }),
      [bpart, gamma, coef, dgamma, dbeta],
      wg(c + pl.rows),
    );
    gpu.dispatch(dxk, [dy, x, mean, rstd, gamma, dx, coef], wg(pl.rows * pl.nch));
    coef.dispose();
  }
  bpart.dispose();
  return { dx, dgamma, dbeta };
}
