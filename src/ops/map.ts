/**
 * The elementwise kernel family: one WGSL template (shaders/map.wgsl) specialised by an expression over
 * inputs x0, x1, ... and, per input, an index map from the output index `i` (identity, or a broadcast
 * such as a per-channel or per-sample value). Every elementwise op, forward or backward, is one of these.
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
  const shape = opts.shape ?? ins[0].t.shape;
  const n = shape.reduce((a, b) => a * b, 1);
  const plain = ins.map((x) => x.index === undefined || x.index === identity);
  for (let k = 0; k < ins.length; k++) {
    if (plain[k] && ins[k].t.size !== n) {
      throw new ShapeError(name, `input ${k} has shape [${ins[k].t.shape}] but the output has [${shape}]`);
    }
  }
  if (opts.inplace && !plain[0]) throw new ShapeError(name, "in-place output must be indexed by identity");
  const key = `map:${name}:${expr}:${n}:${opts.inplace ? 1 : 0}:${ins.map((x) => x.index ?? "i").join(";")}`;
  const kernel = gpu.kernel(key, () => {
    const decls: string[] = [];
    const loads: string[] = [];
    ins.forEach((x, k) => {
      if (k === 0 && opts.inplace) {
        decls.push(`@group(0) @binding(0) var<storage, read_write> out: array<f32>;`);
        loads.push(`  let x0 = out[i];`);
      } else {
        decls.push(`@group(0) @binding(${k}) var<storage, read> in${k}: array<f32>;`);
        loads.push(`  let x${k} = in${k}[${x.index ?? "i"}];`);
      }
    });
    if (!opts.inplace) {
      decls.push(`@group(0) @binding(${ins.length}) var<storage, read_write> out: array<f32>;`);
    }
    return wgsl(template, { DECLS: decls.join("\n"), LOADS: loads.join("\n"), EXPR: expr, N: n });
  });
  if (opts.inplace) {
    gpu.dispatch(kernel, ins.map((x) => x.t), Math.ceil(n / 64));
    return ins[0].t;
  }
  const out = gpu.empty(shape);
  gpu.dispatch(kernel, [...ins.map((x) => x.t), out], Math.ceil(n / 64));
  return out;
}

/** a += b, in command order (the tape's gradient accumulation). */
export function addInPlace(gpu: Gpu, a: Tensor, b: Tensor): Tensor {
  return map(gpu, "add_inplace", "x0 + x1", [a, b], { inplace: true });
}
