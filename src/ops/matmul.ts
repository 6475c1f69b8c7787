/**
 * Batched matrix products from one GEMM template (shaders/matmul.wgsl): `matmul` (with transposes and
 * batch broadcast), its backward, `linear` (fused bias) and `columnSum` (the bias gradient, a GEMM with
 * a virtual row of ones). Transposes are read in place by the kernel, so backward needs no transpose
 * kernels; a gradient for an operand broadcast over the batch is summed over the batch inside the GEMM.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32, wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/matmul.wgsl" with { type: "text" };

/** "register": barrier-free register tiles (software adapters); "shared": workgroup-memory tiles. */
export type MatmulVariant = "register" | "shared";

export interface MatmulOptions {
  /** a is stored [K,M] (or [B,K,M]) and used transposed. */
  transA?: boolean;
  /** b is stored [N,K] (or [B,N,K]) and used transposed. */
  transB?: boolean;
  /** Scale of the product (attention's 1/sqrt(d) without an extra pass). Default 1. */
  alpha?: number;
  /** Force a kernel variant (tests run both); default chosen by the adapter. */
  variant?: MatmulVariant;
}

/** One GEMM launch: C[b] = alpha op(A[b]) op(B[b]) (+ bias), or with `reduce` the sum over b. */
interface GemmSpec {
  m: number;
  n: number;
  k: number;
  batch: number;
  /** Batch strides in elements; 0 = broadcast. */
  sa: number;
  sb: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  reduce: boolean;
  variant?: MatmulVariant;
}

function gemm(
  gpu: Gpu,
  s: GemmSpec,
  a: Tensor | null,
  b: Tensor,
  bias: Tensor | null,
  outShape: readonly number[],
): Tensor {
  const variant = s.variant ?? (gpu.adapter.isSoftware ? "register" : "shared");
  const consts = {
    SHARED: variant === "shared",
    M: s.m,
    N: s.n,
    K: s.k,
    K4: s.k - (s.k % 4),
    BATCH: s.batch,
    SA: s.sa,
    SB: s.sb,
    SC: s.reduce ? 0 : s.m * s.n,
    TRANS_A: s.transA,
    TRANS_B: s.transB,
    // an operand is read as vec4 when every row it is read along starts 16-byte aligned
    VEC_A: a !== null && (s.transA ? s.m : s.k) % 4 === 0,
    VEC_B: (s.transB ? s.k : s.n) % 4 === 0,
    VEC_C: s.n % 4 === 0,
    ALPHA: f32(s.alpha),
    BIAS: bias !== null,
    ONES_A: a === null,
    REDUCE: s.reduce,
    BIND_B: a === null ? 0 : 1,
    BIND_BIAS: a === null ? 1 : 2,
    BIND_C: (a === null ? 1 : 2) + (bias ? 1 : 0),
  };
  const key = "matmul:" + Object.entries(consts).map(([k, v]) => `${k}=${v}`).join(",");
  const kernel = gpu.kernel(key, () => wgsl(template, consts));
  const out = gpu.empty(outShape);
  const z = s.reduce ? 1 : s.batch;
  const grid: [number, number, number] = variant === "shared"
    ? [Math.ceil(s.n / 64), Math.ceil(s.m / 64), z]
    : [Math.ceil(s.n / 64), Math.ceil(s.m / 32), z];
  const bindings = [...(a ? [a] : []), b, ...(bias ? [bias] : []), out];
  gpu.dispatch(kernel, bindings, grid);
  return out;
}

/** Rows, columns and batch of a 2-D or 3-D operand. */
function operand(op: string, name: string, t: Tensor): { batch: number | null; r: number; c: number } {
  if (t.dtype !== "f32") throw new ShapeError(op, `${name} must be f32, got ${t.dtype}`);
  if (t.shape.length === 2) return { batch: null, r: t.shape[0], c: t.shape[1] };
  if (t.shape.length === 3) return { batch: t.shape[0], r: t.shape[1], c: t.shape[2] };
  throw new ShapeError(op, `${name} must be 2-D or 3-D, got [${t.shape}]`);
}

/** Dimensions of op(a) op(b); a 2-D operand broadcasts over the other's batch. */
function plan(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean) {
  const da = operand(op, "a", a), db = operand(op, "b", b);
  const [m, ka] = transA ? [da.c, da.r] : [da.r, da.c];
  const [kb, n] = transB ? [db.c, db.r] : [db.r, db.c];
  if (ka !== kb) {
    throw new ShapeError(
      op,
      `inner dimensions differ: a [${a.shape}]${transA ? "^T" : ""} and b [${b.shape}]${transB ? "^T" : ""}`,
    );
  }
  if (da.batch !== null && db.batch !== null && da.batch !== db.batch) {
    throw new ShapeError(op, `batch sizes differ: a [${a.shape}] and b [${b.shape}]`);
  }
  const batched = da.batch ?? db.batch;
  return {
    m,
    n,
    k: ka,
    batch: batched ?? 1,
    batched: batched !== null,
    sa: da.batch === null ? 0 : m * ka,
    sb: db.batch === null ? 0 : ka * n,
  };
}

/**
 * alpha * op(a) op(b): a [M,K] or [B,M,K] ([K,M]/[B,K,M] with transA), b [K,N] or [B,K,N] ([N,K]/[B,N,K]
 * with transB) -> [M,N] or [B,M,N]. A 2-D operand broadcasts over the batch.
 */
export function matmul(gpu: Gpu, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const p = plan("matmul", a, b, transA, transB);
  const spec = { ...p, transA, transB, alpha: opts.alpha ?? 1, reduce: false, variant: opts.variant };
  return gemm(gpu, spec, a, b, null, p.batched ? [p.batch, p.m, p.n] : [p.m, p.n]);
}

/**
 * op(x) op(y) written as `shape`; with `reduce`, summed over the batch (the gradient of an operand that
 * was broadcast). Used by the backward only.
 */
function product(
  gpu: Gpu,
  x: Tensor,
  y: Tensor,
  transA: boolean,
  transB: boolean,
  alpha: number,
  shape: readonly number[],
  reduce: boolean,
  variant?: MatmulVariant,
): Tensor {
  const p = plan("matmul backward", x, y, transA, transB);
  return gemm(gpu, { ...p, transA, transB, alpha, reduce: reduce && p.batched, variant }, x, y, null, shape);
}

/**
 * Gradients of `matmul(a, b, opts)` given dC (its output's gradient), each with its operand's shape
 * (summed over the batch for a broadcast operand). `need` skips work for operands without gradients.
 */
export function matmulBackward(
  gpu: Gpu,
  dc: Tensor,
  a: Tensor,
  b: Tensor,
  opts: MatmulOptions = {},
  need: { a?: boolean; b?: boolean } = {},
): { da: Tensor | null; db: Tensor | null } {
  const tA = opts.transA ?? false, tB = opts.transB ?? false, alpha = opts.alpha ?? 1, v = opts.variant;
  const p = plan("matmul backward", a, b, tA, tB);
  const outShape = p.batched ? [p.batch, p.m, p.n] : [p.m, p.n];
  if (dc.size !== p.batch * p.m * p.n) {
    throw new ShapeError("matmul backward", `dC [${dc.shape}] for an output [${outShape}]`);
  }
  // the tape matches gradients by size only: view dC with the output's shape
  if (dc.shape.join() !== outShape.join()) dc = dc.reshape(outShape);
  let da: Tensor | null = null, db: Tensor | null = null;
  if (need.a ?? true) {
    const reduce = a.shape.length === 2;
    // op(A) gets dC op(B)^T; A itself is that or its transpose, op(B) dC^T
    da = tA
      ? product(gpu, b, dc, tB, true, alpha, a.shape, reduce, v)
      : product(gpu, dc, b, false, !tB, alpha, a.shape, reduce, v);
  }
  if (need.b ?? true) {
    const reduce = b.shape.length === 2;
    // op(B) gets op(A)^T dC; B itself is that or its transpose, dC^T op(A)
    db = tB
      ? product(gpu, dc, a, true, tA, alpha, b.shape, reduce, v)
      : product(gpu, a, dc, !tA, false, alpha, b.shape, reduce, v);
  }
  return { da, db };
}

/** Flatten [..., c] to rows x c. */
function rows(op: string, name: string, t: Tensor): number {
  if (t.shape.length < 1) throw new ShapeError(op, `${name} must have at least one dimension`);
  return t.size / t.shape[t.shape.length - 1];
}

/** x [..., in] w^T + bias: w [out, in], bias [out] or null -> [..., out]. */
export function linear(
  gpu: Gpu,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts: { variant?: MatmulVariant } = {},
): Tensor {
  const n = rows("linear", "x", x), inF = x.shape[x.shape.length - 1];
  if (w.shape.length !== 2 || w.shape[1] !== inF) {
    throw new ShapeError(
      "linear",
      `weight [${w.shape}] does not fit input [${x.shape}] (want [out, ${inF}])`,
    );
  }
  const outF = w.shape[0];
  if (bias && (bias.size !== outF || bias.shape.length !== 1)) {
    throw new ShapeError("linear", `bias [${bias.shape}] for ${outF} outputs`);
  }
  const spec = {
    m: n,
    n: outF,
    k: inF,
    batch: 1,
    sa: 0,
    sb: 0,
    transA: false,
    transB: true,
    alpha: 1,
    reduce: false,
    variant: opts.variant,
  };
  return gemm(gpu, spec, x, w, bias, [...x.shape.slice(0, -1), outF]);
}

/**
 * Gradients of `linear(x, w, bias)`: dx = dy w, dw = dy^T x, dbias = column sums of dy. `need` skips work.
 */
export function linearBackward(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  need: { x?: boolean; w?: boolean; bias?: boolean } = {},
  opts: { variant?: MatmulVariant } = {},
): { dx: Tensor | null; dw: Tensor | null; dbias: Tensor | null } {
  const n = rows("linear backward", "x", x), inF = w.shape[1], outF = w.shape[0];
  if (dy.size !== n * outF) throw new ShapeError("linear backward", `dy [${dy.shape}] for ${n}x${outF}`);
  const base = { batch: 1, sa: 0, sb: 0, alpha: 1, reduce: false, variant: opts.variant };
  const dx = need.x ?? true
    ? gemm(gpu, { ...base, m: n, n: inF, k: outF, transA: false, transB: false }, dy, w, null, x.shape)
    : null;
  const dw = need.w ?? true
    ? gemm(gpu, { ...base, m: outF, n: inF, k: n, transA: true, transB: false }, dy, x, null, w.shape)
    : null;
  const dbias = need.bias ?? true ? columnSumRows(gpu, dy, n, outF, opts.variant) : null;
  return { dx, dw, dbias };
}

function columnSumRows(gpu: Gpu, t: Tensor, r: number, c: number, variant?: MatmulVariant): Tensor {
  const spec = {
    m: 1,
    n: c,
    k: r,
    batch: 1,
    sa: 0,
    sb: 0,
    transA: false,
    transB: false,
    alpha: 1,
    reduce: false,
    variant,
  };
  return gemm(gpu, spec, null, t, null, [c]);
}

/** Sum over every axis but the last: t [..., C] -> [C] (the bias gradient). */
export function columnSum(gpu: Gpu, t: Tensor, opts: { variant?: MatmulVariant } = {}): Tensor {
  const c = t.shape[t.shape.length - 1];
  return columnSumRows(gpu, t, rows("columnSum", "t", t), c, opts.variant);
}
