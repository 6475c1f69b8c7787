/**
 * Differentiable elementwise ops on Vars: each runs the raw forward (ops/elementwise.ts) and records a
 * backward closure calling the raw backward kernels. Broadcasting rules are those of ops/elementwise.ts;
 * a broadcast operand's gradient is summed over the axes it was stretched along.
 * Backward closures keep references to the tensors they need (inputs, or the output where the
 * derivative is cheaper from it: tanh, exp, sqrt); those must stay alive until `backward`.
 */
import type { Tensor } from "../tensor.ts";
import * as ops from "../ops/elementwise.ts";
import { record, type Var } from "./var.ts";

function binary(op: ops.BinaryOp, a: Var, b: Var): Var {
  const gpu = a.gpu;
  const out = ops.binary(gpu, op, a.value, b.value);
  return record(
    op,
    out,
    [a, b],
    (g) => ops.binaryBackward(gpu, op, a.value, b.value, g, [a.requiresGrad, b.requiresGrad]),
  );
}

export const add = (a: Var, b: Var): Var => binary("add", a, b);
export const sub = (a: Var, b: Var): Var => binary("sub", a, b);
export const mul = (a: Var, b: Var): Var => binary("mul", a, b);
export const div = (a: Var, b: Var): Var => binary("div", a, b);

/** A unary op whose backward needs the input x, the output y, or only g. */
function unary(
  name: string,
  x: Var,
  forward: (t: Tensor) => Tensor,
  backward: (g: Tensor, y: Tensor) => Tensor,
): Var {
  const y = forward(x.value);
  return record(name, y, [x], (g) => [backward(g, y)]);
}

export const neg = (x: Var): Var =>
  unary("neg", x, (t) => ops.neg(x.gpu, t), (g) => ops.negBackward(x.gpu, g));

export const addScalar = (x: Var, c: number): Var =>
  unary("add_scalar", x, (t) => ops.addScalar(x.gpu, t, c), (g) => g); // the tape copies an alias of g

export const mulScalar = (x: Var, c: number): Var =>
  unary("mul_scalar", x, (t) => ops.mulScalar(x.gpu, t, c), (g) => ops.mulScalarBackward(x.gpu, g, c));

export const powScalar = (x: Var, p: number): Var =>
  unary(
    "pow_scalar",
    x,
    (t) => ops.powScalar(x.gpu, t, p),
    (g) => ops.powScalarBackward(x.gpu, x.value, g, p),
  );

export const silu = (x: Var): Var =>
  unary("silu", x, (t) => ops.silu(x.gpu, t), (g) => ops.siluBackward(x.gpu, x.value, g));

export const relu = (x: Var): Var =>
  unary("relu", x, (t) => ops.relu(x.gpu, t), (g) => ops.reluBackward(x.gpu, x.value, g));

export const tanh = (x: Var): Var =>
  unary("tanh", x, (t) => ops.tanh(x.gpu, t), (g, y) => ops.tanhBackward(x.gpu, y, g));

export const exp = (x: Var): Var =>
  unary("exp", x, (t) => ops.exp(x.gpu, t), (g, y) => ops.expBackward(x.gpu, y, g));

export const log = (x: Var): Var =>
  unary("log", x, (t) => ops.log(x.gpu, t), (g) => ops.logBackward(x.gpu, x.value, g));

export const sqrt = (x: Var): Var =>
  unary("sqrt", x, (t) => ops.sqrt(x.gpu, t), (g, y) => ops.sqrtBackward(x.gpu, y, g));

export const sign = (x: Var): Var =>
  unary("sign", x, (t) => ops.sign(x.gpu, t), (g) => ops.signBackward(x.gpu, g));

export const abs = (x: Var): Var =>
  unary("abs", x, (t) => ops.abs(x.gpu, t), (g) => ops.absBackward(x.gpu, x.value, g));

export const square = (x: Var): Var =>
  unary("square", x, (t) => ops.square(x.gpu, t), (g) => ops.squareBackward(x.gpu, x.value, g));

/** Gradient passes where lo <= x <= hi (bounds included), 0 strictly outside. */
export const clamp = (x: Var, lo: number, hi: number): Var =>
  unary("clamp", x, (t) => ops.clamp(x.gpu, t, lo, hi), (g) => ops.clampBackward(x.gpu, x.value, g, lo, hi));

/** A view of a Var with another shape of the same size (gradient reshaped back). */
function reshaped(name: string, x: Var, shape: readonly number[]): Var {
  return record(name, x.value.reshape(shape), [x], (g) => [g.reshape(x.shape)]);
}

/** A per-channel vector [C] as [1, C, 1, 1]: unambiguous against NCHW whatever the batch size. */
export const asPerChannel = (x: Var): Var => reshaped("as_per_channel", x, [1, x.value.size, 1, 1]);

/** A per-sample vector [N] as [N, 1, ..., 1] of the given rank: unambiguous against [N, ...]. */
export const asPerSample = (x: Var, rank: number): Var =>
  reshaped("as_per_sample", x, [x.value.size, ...Array(rank - 1).fill(1)]);
