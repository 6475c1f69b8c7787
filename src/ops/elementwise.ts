/**
 * Elementwise ops (forward and backward kernels), all built on the map family (map.ts).
 *
 * Broadcasting follows numpy (missing leading dims and size-1 dims stretch), except for a 1-D operand
 * [L] (L > 1) against a tensor of rank >= 2, which follows the project's layout conventions:
 * - against a 4-D NCHW tensor, [C] is per-channel (read as [1, C, 1, 1]);
 * - against any other rank, [D] is the trailing axis as in numpy (a linear bias [out] against [N, out]);
 * - [N] against [N, ...] is per-sample (read as [N, 1, ..., 1]) — never numpy's outer product.
 * When two readings fit (N == C, or N == D) the op throws a ShapeError instead of guessing: write the
 * operand as [1, C, 1, 1] or [N, 1, 1, 1] (`asPerChannel`, `asPerSample`), which is never ambiguous.
 * Shapes are fixed per call, so which reading applies never depends on the data.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32 } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import { broadcastIndex, map, type MapInput } from "./map.ts";
import { reduce } from "./reduce.ts";

export type BinaryOp = "add" | "sub" | "mul" | "div";

/** The output shape and both operands' shapes aligned to its rank (size 1 where broadcast). */
export interface Broadcast {
  shape: number[];
  a: number[];
  b: number[];
}

export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): Broadcast {
  if (a.length === 1 && a[0] !== 1 && b.length >= 2) a = alignVector(op, a[0], b);
  else if (b.length === 1 && b[0] !== 1 && a.length >= 2) b = alignVector(op, b[0], a);
  const rank = Math.max(a.length, b.length);
  const pa = [...Array(rank - a.length).fill(1), ...a], pb = [...Array(rank - b.length).fill(1), ...b];
  const shape = pa.map((n, d) => {
    if (n !== pb[d] && n !== 1 && pb[d] !== 1) {
      throw new ShapeError(op, `shapes [${a}] and [${b}] do not broadcast (axis ${d}: ${n} vs ${pb[d]})`);
    }
    return n === 1 ? pb[d] : n;
  });
  return { shape, a: pa, b: pb };
}

/** Where a 1-D operand of length L goes against `other` (see the module comment). */
function alignVector(op: string, L: number, other: readonly number[]): number[] {
  const r = other.length;
  const readings: [string, number][] = [];
  if (r === 4 && other[1] === L) readings.push(["per-channel", 1]);
  if (r !== 4 && other[r - 1] === L) readings.push(["trailing axis", r - 1]);
  if (other[0] === L) readings.push(["per-sample", 0]);
  const ones = other.map(() => 1);
  const spelled = (axis: number) => `[${ones.map((_, d) => (d === axis ? L : 1))}]`;
  if (readings.length !== 1) {
    const what = readings.length
      ? `is ambiguous (${readings.map((x) => x[0]).join(" or ")})`
      : "fits no axis";
    const fix = readings.length ? readings : [["per-channel", 1], ["per-sample", 0]] as [string, number][];
    throw new ShapeError(
      op,
      `a [${L}] operand against [${other}] ${what}: reshape it to ${
        fix.map((x) => spelled(x[1])).join(" or ")
      }`,
    );
  }
  ones[readings[0][1]] = L;
  return ones;
}

/** A per-channel vector [C] as [1, C, 1, 1] (a view), unambiguous against NCHW. */
export function asPerChannel(t: Tensor): Tensor {
  return t.reshape([1, t.size, 1, 1]);
}

/** A per-sample vector [N] as [N, 1, ..., 1] of the given rank (a view). */
export function asPerSample(t: Tensor, rank: number): Tensor {
  return t.reshape([t.size, ...Array(rank - 1).fill(1)]);
}

const BINARY_EXPR: Record<BinaryOp, string> = {
  add: "x0 + x1",
  sub: "x0 - x1",
  mul: "x0 * x1",
  div: "x0 / x1",
};

export function binary(gpu: Gpu, op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const bc = broadcastShapes(op, a.shape, b.shape);
  return map(gpu, op, BINARY_EXPR[op], [
    { t: a, index: broadcastIndex(bc.a, bc.shape) },
    { t: b, index: broadcastIndex(bc.b, bc.shape) },
  ], { shape: bc.shape });
}

export const add = (gpu: Gpu, a: Tensor, b: Tensor): Tensor => binary(gpu, "add", a, b);
export const sub = (gpu: Gpu, a: Tensor, b: Tensor): Tensor => binary(gpu, "sub", a, b);
export const mul = (gpu: Gpu, a: Tensor, b: Tensor): Tensor => binary(gpu, "mul", a, b);
export const div = (gpu: Gpu, a: Tensor, b: Tensor): Tensor => binary(gpu, "div", a, b);

/**
 * Gradients of `binary(op, a, b)` given g = dL/dout: [dL/da, dL/db], each of its operand's shape, summed
 * over the axes that operand was broadcast along. `need` skips an operand (null). May return a view of g
 * (add, sub without broadcasting).
 */
export function binaryBackward(
  gpu: Gpu,
  op: BinaryOp,
  a: Tensor,
  b: Tensor,
  g: Tensor,
  need: readonly [boolean, boolean] = [true, true],
): [Tensor | null, Tensor | null] {
  const bc = broadcastShapes(op, a.shape, b.shape);
  const gv = sameShape(g.shape, bc.shape) ? g : g.reshape(bc.shape);
  const ga = { t: gv }, ia = { t: a, index: broadcastIndex(bc.a, bc.shape) };
  const ib = { t: b, index: broadcastIndex(bc.b, bc.shape) };
  // the local gradient of each operand as a map over (g, ...): null means g itself, "neg" means -g
  const local: Record<BinaryOp, [[string, MapInput[]] | null | "neg", [string, MapInput[]] | null | "neg"]> =
    {
      add: [null, null],
      sub: [null, "neg"],
      mul: [["x0 * x1", [ga, ib]], ["x0 * x1", [ga, ia]]],
      div: [["x0 / x1", [ga, ib]], ["-x0 * x1 / (x2 * x2)", [ga, ia, ib]]],
    };
  const grad = (k: 0 | 1, target: Tensor, aligned: number[]): Tensor | null => {
    if (!need[k]) return null;
    const name = `${op}_backward${k}`, how = local[op][k];
    const axes = aligned.flatMap((n, d) => (n === 1 && bc.shape[d] > 1 ? [d] : []));
    if (how === null || how === "neg") {
      if (axes.length) {
        return reduce(gpu, name, gv, axes, { kind: "sum", pre: how ? "-v" : "v" }, target.shape);
      }
      return how ? map(gpu, name, "-x0", [gv], { shape: target.shape }) : gv.reshape(target.shape);
    }
    if (axes.length === 0) return map(gpu, name, how[0], how[1], { shape: target.shape });
    const full = map(gpu, name, how[0], how[1], { shape: bc.shape });
    const out = reduce(gpu, name, full, axes, { kind: "sum" }, target.shape);
    full.dispose();
    return out;
  };
  return [grad(0, a, bc.a), grad(1, b, bc.b)];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, d) => n === b[d]);
}

// ---------------------------------------------------------------- scalar ops (constants baked in)

/** A float constant as a WGSL f32 literal in parentheses (safe after any operator). */
const c32 = (c: number) => `(${f32(c)})`;

export const addScalar = (gpu: Gpu, x: Tensor, c: number): Tensor =>
  map(gpu, "add_scalar", `x0 + ${c32(c)}`, [x]);
export const mulScalar = (gpu: Gpu, x: Tensor, c: number): Tensor =>
  map(gpu, "mul_scalar", `x0 * ${c32(c)}`, [x]);

/** WGSL for v^p: integer p works for any sign of v; other p need v >= 0 (NaN below, like Math.pow). */
function powExpr(v: string, p: number): string {
  if (p === 0) return "1.0";
  if (p === 1) return v;
  if (p === 2) return `(${v} * ${v})`;
  if (!Number.isInteger(p)) return `pow(${v}, ${c32(p)})`;
  const mag = p === -1 ? `(1.0 / abs(${v}))` : `pow(abs(${v}), ${c32(p)})`;
  return p % 2 === 0 ? mag : `(${mag} * sign(${v}))`;
}

/** x^p elementwise (see powExpr for the domain). */
export const powScalar = (gpu: Gpu, x: Tensor, p: number): Tensor =>
  map(gpu, "pow_scalar", powExpr("x0", p), [x]);

export function powScalarBackward(gpu: Gpu, x: Tensor, g: Tensor, p: number): Tensor {
  if (p === 0) return map(gpu, "zero", "0.0", [g]);
  return map(gpu, "pow_scalar_backward", `x1 * ${c32(p)} * ${powExpr("x0", p - 1)}`, [x, g]);
}

// ---------------------------------------------------------------- unary ops

export const neg = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "neg", "-x0", [x]);
export const silu = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "silu", "x0 / (1.0 + exp(-x0))", [x]);
export const relu = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "relu", "max(x0, 0.0)", [x]);
/** Clamped first: tanh is +-1 in float32 beyond |x| = 9.02 anyway, and some drivers compute it from exp
 * and return NaN for large |x| (llvmpipe does not, but the kernel must not depend on that). */
export const tanh = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "tanh", "tanh(clamp(x0, -15.0, 15.0))", [x]);
export const exp = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "exp", "exp(x0)", [x]);
export const log = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "log", "log(x0)", [x]);
export const sqrt = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "sqrt", "sqrt(x0)", [x]);
export const sign = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "sign", "sign(x0)", [x]);
export const abs = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "abs", "abs(x0)", [x]);
export const square = (gpu: Gpu, x: Tensor): Tensor => map(gpu, "square", "x0 * x0", [x]);

export function clamp(gpu: Gpu, x: Tensor, lo: number, hi: number): Tensor {
  if (!(lo <= hi)) throw new ShapeError("clamp", `lo ${lo} > hi ${hi}`);
  return map(gpu, "clamp", `clamp(x0, ${c32(lo)}, ${c32(hi)})`, [x]);
}

// Backward kernels: x0 is the incoming gradient g; x1 is the op's input x or its output y as named.

export const negBackward = (gpu: Gpu, g: Tensor): Tensor => neg(gpu, g);
export const mulScalarBackward = (gpu: Gpu, g: Tensor, c: number): Tensor => mulScalar(gpu, g, c);

/** d silu / dx = s (1 + x (1 - s)) with s = sigmoid(x). */
export const siluBackward = (gpu: Gpu, x: Tensor, g: Tensor): Tensor =>
  map(gpu, "silu_backward", "x0 * (1.0 / (1.0 + exp(-x1))) * (1.0 + x1 * (1.0 - 1.0 / (1.0 + exp(-x1))))", [
    g,
    x,
  ]);

/** 0 at x = 0 (and below). */
export const reluBackward = (gpu: Gpu, x: Tensor, g: Tensor): Tensor =>
  map(gpu, "relu_backward", "select(0.0, x0, x1 > 0.0)", [g, x]);

/** From the output y: 1 - y^2. */
export const tanhBackward = (gpu: Gpu, y: Tensor, g: Tensor): Tensor =>
  map(gpu, "tanh_backward", "x0 * (1.0 - x1 * x1)", [g, y]);

/** From the output y = exp(x). */
export const expBackward = (gpu: Gpu, y: Tensor, g: Tensor): Tensor =>
  map(gpu, "exp_backward", "x0 * x1", [g, y]);

export const logBackward = (gpu: Gpu, x: Tensor, g: Tensor): Tensor =>
  map(gpu, "log_backward", "x0 / x1", [g, x]);

/** From the output y = sqrt(x): 1 / (2 y) (infinite at 0, as the derivative is). */
export const sqrtBackward = (gpu: Gpu, y: Tensor, g: Tensor): Tensor =>
  map(gpu, "sqrt_backward", "x0 * 0.5 / x1", [g, y]);

/** sign is piecewise constant: zero gradient everywhere (0 at the jump too). */
export const signBackward = (gpu: Gpu, g: Tensor): Tensor => map(gpu, "zero", "0.0", [g]);

/** sign(x): 0 at x = 0. */
export const absBackward = (gpu: Gpu, x: Tensor, g: Tensor): Tensor =>
  map(gpu, "abs_backward", "x0 * sign(x1)", [g, x]);

export const squareBackward = (gpu: Gpu, x: Tensor, g: Tensor): Tensor =>
  map(gpu, "square_backward", "2.0 * x0 * x1", [g, x]);

/** Passes the gradient where lo <= x <= hi, bounds included (so a value sitting on a bound, e.g. a pixel
 * at 0 or 1 after projection, still receives gradient); 0 strictly outside. */
export function clampBackward(gpu: Gpu, x: Tensor, g: Tensor, lo: number, hi: number): Tensor {
  return map(gpu, "clamp_backward", `select(0.0, x0, x1 >= ${c32(lo)} && x1 <= ${c32(hi)})`, [g, x]);
}
