/**
 * Tensors: a typed view of a GPU buffer (float32 unless stated), row-major, with a shape.
 *
 * Memory follows TF.js's `tidy`: tensors created inside `scope(fn)` are released when it ends, except
 * those reachable from its result, which move to the enclosing scope. Tensors created outside any scope
 * belong to the caller (call `dispose`). Views into a flat parameter buffer are never pooled.
 */
import type { Gpu } from "./gpu/context.ts";

export type DType = "f32" | "u32" | "i32";

const scopes: Set<Tensor>[] = [];

export class Tensor {
  readonly size: number;
  private disposed = false;

  constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType = "f32",
    /** Byte offset into `buffer` (a multiple of 256 when bound on its own). */
    readonly offset = 0,
    private readonly pooled = true,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    if (pooled) scopes[scopes.length - 1]?.add(this);
  }

  get bytes(): number {
    return this.size * 4;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Return the buffer to the pool. Safe to call twice; views are left alone. */
  dispose(): void {
    if (this.disposed || !this.pooled) return;
    this.disposed = true;
    scopes[scopes.length - 1]?.delete(this);
    this.gpu.pool.release(this.buffer);
  }

  /** The same memory with another shape of equal size (shares the buffer; not owned by a scope). */
  reshape(shape: readonly number[]): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== this.size) throw new RangeError(`reshape: [${this.shape}] -> [${shape}] changes the size`);
    return new Tensor(this.gpu, this.buffer, shape, this.dtype, this.offset, false);
  }

  toString(): string {
    return `Tensor<${this.dtype}>[${this.shape.join(",")}]`;
  }
}

/** Anything holding tensors: scope results are searched for these to keep them alive. */
export type Keepable =
  | Tensor
  | { value: Tensor; grad?: Tensor | null }
  | readonly unknown[]
  | Record<string, unknown>;

function collect(x: unknown, out: Set<Tensor>, seen = new Set<unknown>()): void {
  if (x === null || typeof x !== "object" || seen.has(x)) return;
  seen.add(x);
  if (x instanceof Tensor) {
    out.add(x);
    return;
  }
  if (Array.isArray(x)) {
    for (const v of x) collect(v, out, seen);
    return;
  }
  const proto = Object.getPrototypeOf(x);
  if (proto === Object.prototype || proto === null || "value" in (x as object)) {
    for (const v of Object.values(x as Record<string, unknown>)) collect(v, out, seen);
  }
}

/** Close the innermost scope: free its tensors, passing those reachable from `result` to the parent. */
function closeScope(mine: Set<Tensor>, result: unknown): void {
  scopes.pop();
  const keep = new Set<Tensor>();
  collect(result, keep);
  const parent = scopes[scopes.length - 1];
  for (const t of mine) {
    if (keep.has(t)) parent?.add(t);
    else t.dispose();
  }
}

/** Drop the innermost scope after `fn` threw, freeing everything it created. */
function abandonScope(mine: Set<Tensor>): void {
  scopes.pop();
  for (const t of mine) t.dispose();
}

/** Run `fn`; release every tensor it created except those reachable from its result. */
export function scope<T>(fn: () => T): T {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    abandonScope(mine);
    throw e;
  }
  closeScope(mine, result);
  return result;
}

/** Async variant of `scope` for flows that read back. */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  const depth = scopes.length;
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    abandonScope(mine);
    throw e;
  }
  if (scopes.length !== depth) throw new Error("scopeAsync: scopes were interleaved");
  closeScope(mine, result);
  return result;
}

/** Take a tensor out of the current scope so that it outlives it (the caller disposes it). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}
