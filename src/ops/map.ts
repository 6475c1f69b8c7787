/**
 * The elementwise kernel family: one WGSL template (shaders/map.wgsl) specialised by an expression over
 * inputs x0, x1, ... and, per input, an index map from the output index `i` (identity, or a broadcast
 * such as a per-channel or per-sample value). Every elementwise op, forward or backward, is one of these.
 *
 * When the size is a multiple of 4, identity inputs and the output are accessed as vec4 (4 outputs per
 * invocation); the expression itself stays scalar, so any f32 expression works in both paths.
 */
import type { Gpu } from "../gpu/context.ts";
import { wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/map.wgsl" with { type: "text" };

/** How input k is indexed from the output index `i` (a WGSL u32 expression in `i`). */
export type IndexMap = string;
export const identity: IndexMap = "i";

export interface MapInput {
  t: Tensor;
  /** WGSL expression of the element index for output index `i`; default identity. */
  index?: IndexMap;
}

/**
 * out = expr(x0, x1, ...) elementwise. `expr` is a WGSL f32 expression in x0..x{k-1} (and `i`).
 * With `inplace`, the result is written into inputs[0] (which must have the output size and identity index).
 */
export function map(
  gpu: Gpu,
  name: string,
  expr: string,
  inputs: readonly (Tensor | MapInput)[],
  opts: { shape?: readonly number[]; inplace?: boolean } = {},
): Tensor {
  const ins = inputs.map((x) => ("t" in x ? x : { t: x as Tensor }) as MapInput);
  const shape = opts.shape ?? ins[0]?.t.shape;
  if (!shape) throw new ShapeError(name, "a map without inputs needs an output shape");
  const n = shape.reduce((a, b) => a * b, 1);
  const plain = ins.map((x) => x.index === undefined || x.index === identity);
  for (let k = 0; k < ins.length; k++) {
    if (ins[k].t.dtype !== "f32") throw new ShapeError(name, `input ${k} is ${ins[k].t.dtype}, not f32`);
    if (plain[k] && ins[k].t.size !== n) {
      throw new ShapeError(name, `input ${k} has shape [${ins[k].t.shape}] but the output has [${shape}]`);
    }
  }
  const inplace = Boolean(opts.inplace);
  if (inplace && !plain[0]) throw new ShapeError(name, "in-place output must be indexed by identity");
  const vec4 = n % 4 === 0;
  const indexes = ins.map((x) => x.index ?? identity);
  const key = `map:${name}:${expr}:${n}:${inplace ? 1 : 0}:${vec4 ? 4 : 1}:${indexes.join(";")}`;
  const kernel = gpu.kernel(key, () => mapSource(expr, n, indexes, inplace, vec4));
  const workgroups = Math.ceil((vec4 ? n / 4 : n) / 64);
  if (inplace) {
    gpu.dispatch(kernel, ins.map((x) => x.t), workgroups);
    return ins[0].t;
  }
  const out = gpu.empty(shape);
  gpu.dispatch(kernel, [...ins.map((x) => x.t), out], workgroups);
  return out;
}

function mapSource(expr: string, n: number, indexes: readonly IndexMap[], inplace: boolean, vec4: boolean) {
  const vt = vec4 ? "vec4<f32>" : "f32";
  const decls: string[] = [], loaders: string[] = [], loads: string[] = [];
  const args: string[][] = [[], [], [], [], []]; // scalar path, then x, y, z, w of the vec4 path
  indexes.forEach((index, k) => {
    const buf = inplace && k === 0 ? "out" : `in${k}`;
    if (buf !== "out") {
      const type = index === identity ? vt : "f32";
      decls.push(`@group(0) @binding(${k}) var<storage, read> in${k}: array<${type}>;`);
    }
    if (index === identity) {
      loads.push(`  let v${k} = ${buf}[j];`);
      args[0].push(`v${k}`);
      "xyzw".split("").forEach((c, q) => args[q + 1].push(`v${k}.${c}`));
    } else {
      loaders.push(`fn at${k}(i: u32) -> f32 {\n  return in${k}[${index}];\n}`);
      args[0].push(`at${k}(i)`);
      for (let q = 0; q < 4; q++) args[q + 1].push(`at${k}(i${q ? ` + ${q}u` : ""})`);
    }
  });
  const outBinding = inplace ? 0 : indexes.length;
  decls.unshift(`@group(0) @binding(${outBinding}) var<storage, read_write> out: array<${vt}>;`);
  return wgsl(template, {
    DECLS: decls.join("\n"),
    PARAMS: indexes.map((_, k) => `x${k}: f32`).join(", "),
    EXPR: expr,
    LOADERS: loaders.join("\n"),
    LOADS: loads.join("\n"),
    ARGS: args[0].join(", "),
    ARGS_X: args[1].join(", "),
    ARGS_Y: args[2].join(", "),
    ARGS_Z: args[3].join(", "),
    ARGS_W: args[4].join(", "),
    N: n,
    VEC4: vec4,
  });
}

/** a += b, in command order (the tape's gradient accumulation). */
export function addInPlace(gpu: Gpu, a: Tensor, b: Tensor): Tensor {
  return map(gpu, "add_inplace", "x0 + x1", [a, b], { inplace: true });
}

// ---------------------------------------------------------------- index maps

/** One digit of a mixed-radix index: ((v / div) % mod) * mul. */
export interface IndexTerm {
  div: number;
  mod: number;
  mul: number;
}

/** A WGSL u32 expression summing `terms` of the variable `v`, which ranges over [0, total). Divisions,
 * remainders and products by 1 are left out, and so is a remainder that cannot wrap. */
export function indexExpr(v: string, terms: readonly IndexTerm[], total: number): string {
  const parts = terms.filter((t) => t.mod > 1).map((t) => {
    let e = v;
    if (t.div > 1) e = `(${e} / ${t.div}u)`;
    if (t.div * t.mod < total) e = `(${e} % ${t.mod}u)`;
    return t.mul === 1 ? e : `${e} * ${t.mul}u`;
  });
  return parts.length ? parts.join(" + ") : "0u";
}

/**
 * The index map that reads an input of shape `from` (same rank as `to`, every dim equal to `to`'s or 1)
 * broadcast to the shape `to`. Adjacent dims that are both broadcast or both kept are merged, so a
 * per-channel read of NCHW costs one division and one remainder. Identity when nothing is broadcast.
 */
export function broadcastIndex(from: readonly number[], to: readonly number[]): IndexMap {
  if (from.length !== to.length) throw new ShapeError("broadcast", `ranks of [${from}] and [${to}] differ`);
  const total = to.reduce((a, b) => a * b, 1);
  if (total === 1) return identity;
  const terms: IndexTerm[] = [];
  let outStride = 1, inStride = 1;
  let open: IndexTerm | null = null; // the kept group being extended outwards
  for (let d = to.length - 1; d >= 0; d--) {
    const o = to[d], f = from[d];
    if (f !== o && f !== 1) throw new ShapeError("broadcast", `[${from}] does not broadcast to [${to}]`);
    if (o === 1) continue; // size-1 dims change no index and do not break a group
    if (f === o) {
      if (open) open.mod *= o;
      else terms.push(open = { div: outStride, mod: o, mul: inStride });
      inStride *= f;
    } else open = null;
    outStride *= o;
  }
  if (terms.length === 1 && terms[0].div === 1 && terms[0].mul === 1 && terms[0].mod === total) {
    return identity;
  }
  return indexExpr("i", terms, total);
}
