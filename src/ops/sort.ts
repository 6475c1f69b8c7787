/**
 * Per-row (last axis) sort, argsort and rank of f32 values, and a per-row gather; the pieces of a
 * rank-based Gaussian mapping: out = gatherRows(sort(z), rank(acc)).
 *
 * - Ascending; stable: ties are ordered by original index. -0 and +0 tie; every NaN sorts after +inf
 *   (NaNs among themselves in index order), as in NumPy and PyTorch.
 * - argsort[r, p] = index of the p-th smallest; rank[r, i] = position of element i in that order
 *   (argsort(argsort(x))); both u32. Sorted values are the inputs' exact bits (so -0 stays -0).
 * - A bitonic network over (key, index) pairs padded to a power of two, as barrier-free global passes
 *   with up to 16 elements per invocation in registers (shaders/sort.wgsl): 21 dispatches and 6 pipelines
 *   for a row of 4096, 1 of each for a row of 16 or less. Any row length works while
 *   rows * 2^ceil(log2 L) * 8 bytes fits one storage binding.
 * - Pass parameters (stage, low stride) live in a small u32 table per padded row length, uploaded once
 *   per process and kept (not owned by any scope).
 */
import type { Gpu } from "../gpu/context.ts";
import { wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import { keep, Tensor } from "../tensor.ts";
import template from "../../shaders/sort.wgsl" with { type: "text" };

/** Elements per invocation: 16 (key, index) pairs stay in registers without spilling. */
const MAX_E = 16;

/** One dispatch: stages kLo..kHi, strides from min(K/2, jTop) down to ls, e elements per invocation. */
export interface SortPass {
  kLo: number;
  kHi: number;
  jTop: number;
  ls: number;
  e: number;
}

/** The passes of a bitonic sort of rows of p = 2^k (exported for tests and benchmarks). */
export function sortSchedule(p: number): SortPass[] {
  const e0 = Math.min(MAX_E, p);
  const passes: SortPass[] = [{ kLo: 2, kHi: e0, jTop: e0 / 2, ls: 1, e: e0 }];
  for (let k = 2 * e0; k <= p; k *= 2) {
    // strides k/2 .. e0 cross runs of e0: up to log2(e0) of them per pass
    for (let j = k / 2; j >= e0;) {
      const e = 2 ** Math.min(Math.log2(e0), Math.log2(j / e0) + 1);
      const ls = (2 * j) / e;
      passes.push({ kLo: k, kHi: k, jTop: j, ls, e });
      j = ls / 2;
    }
    passes.push({ kLo: k, kHi: k, jTop: e0 / 2, ls: 1, e: e0 });
  }
  return passes;
}

/** Byte stride of parameter-table entries (WebGPU's default minStorageBufferOffsetAlignment). */
const PARAM_STRIDE = 256;

const paramTables = new WeakMap<Gpu, Map<number, Tensor>>();

/** Entry n (n >= 1) holds pass n's (K, LS, log2 LS); uploaded on first use of a padded length. */
function paramTable(gpu: Gpu, p: number, passes: readonly SortPass[]): Tensor {
  let perGpu = paramTables.get(gpu);
  if (!perGpu) paramTables.set(gpu, perGpu = new Map());
  let table = perGpu.get(p);
  if (!table) {
    const words = PARAM_STRIDE / 4, data = new Uint32Array(passes.length * words);
    passes.forEach((s, n) => data.set([s.kHi, s.ls, Math.log2(s.ls)], n * words));
    table = keep(gpu.tensor(data, [passes.length, words]));
    perGpu.set(p, table);
  }
  return table;
}

/** The unrolled compare-exchange network of a pass (constant indices keep `v` in registers). Passes after
 * the first have one stage wider than their group, so their network depends on `e` alone. */
function network(pass: SortPass): string {
  const lines: string[] = [];
  for (let k = pass.kLo; k <= pass.kHi; k *= 2) {
    for (let j = Math.min(k / 2, pass.jTop); j >= pass.ls; j /= 2) {
      const d = j / pass.ls;
      for (let m = 0; m < pass.e; m++) {
        if (m & d) continue;
        // below the group's width the direction is known per element; above it, per group (`asc`)
        const swap = k < pass.e * pass.ls
          ? (((m * pass.ls) & k) === 0 ? "lt(b, a)" : "lt(a, b)")
          : "lt(b, a) == asc";
        lines.push(
          `  { let a = v[${m}]; let b = v[${m + d}]; let s = ${swap}; ` +
            `v[${m}] = select(a, b, s); v[${m + d}] = select(b, a, s); }`,
        );
      }
    }
  }
  return lines.join("\n");
}

export interface SortOutputs {
  values?: Tensor;
  indices?: Tensor;
  rank?: Tensor;
}

/** Sort every row (last axis) of x; `want` chooses which outputs to write. */
export function sortRows(
  gpu: Gpu,
  x: Tensor,
  want: { values?: boolean; indices?: boolean; rank?: boolean },
): SortOutputs {
  if (x.dtype !== "f32") throw new ShapeError("sortRows", `expects f32 values, got ${x}`);
  if (x.shape.length === 0) throw new ShapeError("sortRows", "needs at least one axis");
  if (!want.values && !want.indices && !want.rank) throw new ShapeError("sortRows", "no output wanted");
  const l = x.shape[x.shape.length - 1];
  const rows = x.size / l;
  const p = 2 ** Math.ceil(Math.log2(l));
  const limit = gpu.adapter.limits.maxStorageBufferBindingSize ?? 2 ** 27;
  if (rows * p * 8 > limit) {
    throw new ShapeError("sortRows", `[${x.shape}] pads to ${rows} x ${p} pairs, over one storage binding`);
  }
  const out: SortOutputs = {};
  if (want.values) out.values = gpu.empty(x.shape);
  if (want.indices) out.indices = gpu.empty(x.shape, "u32");
  if (want.rank) out.rank = gpu.empty(x.shape, "u32");
  const passes = sortSchedule(p);
  const table = passes.length > 1 ? paramTable(gpu, p, passes) : null;
  const work = passes.length > 1 ? gpu.empty([rows * p * 2], "u32") : null;
  const outKey = `${want.values ? "v" : ""}${want.indices ? "i" : ""}${want.rank ? "r" : ""}`;
  passes.forEach((pass, n) => {
    const first = n === 0, last = n === passes.length - 1;
    const bindings: Tensor[] = [];
    if (!first) bindings.push(paramView(table!, n));
    const slot = (t: Tensor | null | undefined, use: boolean) => use && t ? bindings.push(t) - 1 : -1;
    const bx = slot(x, first || (last && !!want.values));
    const bw = slot(work, !(first && last));
    const bv = slot(out.values, last), bi = slot(out.indices, last), br = slot(out.rank, last);
    const groups = p / pass.e;
    // the first pass bakes its stages; later ones differ only by e (and the outputs of the last)
    const key = `sort:${rows}:${l}:${pass.e}:` + (first ? `F${pass.kHi}` : "") + (last ? `L${outKey}` : "");
    const kernel = gpu.kernel(key, () =>
      wgsl(template, {
        L: l,
        P: p,
        E: pass.e,
        S: Math.log2(pass.e),
        K: pass.kHi,
        GROUPS: groups,
        TOTAL: rows * groups,
        FIRST: first,
        LAST: last,
        HAS_X: bx >= 0,
        HAS_WORK: bw >= 0,
        HAS_VALUES: bv >= 0,
        HAS_INDICES: bi >= 0,
        HAS_RANK: br >= 0,
        B_X: bx,
        B_WORK: bw,
        B_VALUES: bv,
        B_INDICES: bi,
        B_RANK: br,
        LOADS: range(pass.e).map((m) => `  v[${m}] = load(row, base + ${m}u * ls);`).join("\n"),
        NET: network(pass),
        STORES: range(pass.e).map((m) => `  store(row, base + ${m}u * ls, v[${m}]);`).join("\n"),
      }));
    gpu.dispatch(kernel, bindings, Math.ceil((rows * groups) / 64));
  });
  work?.dispose(); // back to the pool; later users come after these dispatches in command order
  return out;
}

/** Each row sorted ascending (f32). */
export function sort(gpu: Gpu, x: Tensor): Tensor {
  return sortRows(gpu, x, { values: true }).values!;
}

/** Stable argsort of each row (u32). */
export function argsort(gpu: Gpu, x: Tensor): Tensor {
  return sortRows(gpu, x, { indices: true }).indices!;
}

/** rank[r, i] = position of x[r, i] in the stable sorted order of row r (u32). */
export function rank(gpu: Gpu, x: Tensor): Tensor {
  return sortRows(gpu, x, { rank: true }).rank!;
}

/** out[r, i] = values[r, idx[r, i]] for values [..., M] and u32 idx [..., L] with the same rows; an
 * index >= M gives NaN. Copies bits, so any 32-bit dtype of `values` works; the output takes its dtype. */
export function gatherRows(gpu: Gpu, values: Tensor, idx: Tensor): Tensor {
  if (idx.dtype !== "u32") throw new ShapeError("gatherRows", `indices must be u32, got ${idx}`);
  if (values.shape.length === 0 || idx.shape.length === 0) throw new ShapeError("gatherRows", "needs rows");
  const m = values.shape[values.shape.length - 1], l = idx.shape[idx.shape.length - 1];
  if (values.size / m !== idx.size / l) {
    throw new ShapeError("gatherRows", `values [${values.shape}] and indices [${idx.shape}] differ in rows`);
  }
  const out = gpu.empty(idx.shape, values.dtype);
  const n = idx.size;
  const kernel = gpu.kernel(
    `sort:gather:${n}:${l}:${m}`,
    () => wgsl(template, { GATHER: true, N: n, L: l, M: m }),
  );
  gpu.dispatch(kernel, [values, idx, out], Math.ceil(n / 64));
  return out;
}

/** Entry n of a parameter table as a u32[4] view at a 256-byte offset. */
const paramView = (table: Tensor, n: number) =>
  new Tensor(table.gpu, table.buffer, [4], "u32", table.offset + n * PARAM_STRIDE, false);

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
