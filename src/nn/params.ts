/**
 * ParamStore: every parameter of a model in one flat f32 buffer, with a flat gradient buffer of the same
 * layout (llm.c style), so that the optimizer, gradient clipping and EMA are one kernel each over the whole
 * model and a checkpoint is one read. Each parameter starts at a multiple of 64 floats (256 bytes, the
 * storage-binding offset alignment) so that it can be bound on its own; padding stays zero in values and
 * gradients, which every optimizer kernel keeps at zero.
 *
 * `get(name)` is a leaf Var whose value and grad are views into the flat buffers; `fixedGrad` makes the
 * tape accumulate into the view (addInPlace) instead of allocating a gradient.
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, Tensor } from "../tensor.ts";
import { Var } from "../autodiff/var.ts";

/** Floats per alignment unit: 256 bytes. */
export const PARAM_ALIGN = 64;

export interface ParamSpec {
  name: string;
  shape: readonly number[];
}

export interface ParamInit extends ParamSpec {
  init: Float32Array;
}

/** A parameter's place in the flat buffers (offset and size in floats). */
export interface ParamSlot extends ParamSpec {
  offset: number;
  size: number;
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** Offsets for `specs` in order, each aligned to PARAM_ALIGN floats; `total` is a multiple of it too. */
export function layoutParams(specs: readonly ParamSpec[]): { slots: ParamSlot[]; total: number } {
  const seen = new Set<string>();
  let offset = 0;
  const slots = specs.map(({ name, shape }) => {
    if (seen.has(name)) throw new Error(`ParamStore: duplicate parameter name ${name}`);
    seen.add(name);
    const size = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(size) || size <= 0) {
      throw new RangeError(`ParamStore: bad shape [${shape}] for ${name}`);
    }
    const slot = { name, shape: [...shape], offset, size };
    offset = roundUp(offset + size, PARAM_ALIGN);
    return slot;
  });
  return { slots, total: Math.max(offset, PARAM_ALIGN) };
}

export class ParamStore {
  /** Flat parameter values and gradients ([total] each, owned by the store). */
  readonly values: Tensor;
  readonly grads: Tensor;
  private readonly vars = new Map<string, Var>();
  private readonly byName: Map<string, ParamSlot>;

  private constructor(readonly gpu: Gpu, readonly slots: readonly ParamSlot[], readonly total: number) {
    this.byName = new Map(slots.map((s) => [s.name, s]));
    // kept out of any enclosing scope: the store owns these until dispose()
    this.values = keep(gpu.zeros([total]));
    this.grads = keep(gpu.zeros([total]));
  }

  /** A store holding the given initial values (one upload). */
  static create(gpu: Gpu, specs: readonly ParamInit[]): ParamStore {
    const { slots, total } = layoutParams(specs);
    const store = new ParamStore(gpu, slots, total);
    store.uploadAll(new Map(specs.map((s) => [s.name, s.init])));
    return store;
  }

  /** A store with the given layout and host values (from `toHost`, a checkpoint); missing names throw. */
  static fromHost(
    gpu: Gpu,
    specs: readonly ParamSpec[],
    data: ReadonlyMap<string, Float32Array>,
  ): ParamStore {
    const { slots, total } = layoutParams(specs);
    const store = new ParamStore(gpu, slots, total);
    store.uploadAll(data);
    return store;
  }

  /** A store with this layout and a copy of these values (e.g. the EMA weights). */
  clone(): ParamStore {
    const store = new ParamStore(this.gpu, this.slots, this.total);
    store.copyFrom(this);
    return store;
  }

  get names(): string[] {
    return this.slots.map((s) => s.name);
  }

  slot(name: string): ParamSlot {
    const s = this.byName.get(name);
    if (!s) throw new Error(`ParamStore: no parameter named ${name}`);
    return s;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The parameter as a leaf Var (the same Var on every call); value and grad are views. */
  get(name: string): Var {
    let v = this.vars.get(name);
    if (!v) {
      const s = this.slot(name);
      v = new Var(this.view(this.values, s), true, null, name);
      v.grad = this.view(this.grads, s);
      v.fixedGrad = true;
      this.vars.set(name, v);
    }
    return v;
  }

  /** The view of parameter `name` inside a flat tensor of this layout (values, grads, a moment buffer). */
  viewOf(flat: Tensor, name: string): Tensor {
    return this.view(flat, this.slot(name));
  }

  /** Zero every gradient (one fill over the flat gradient buffer). */
  zeroGrad(): void {
    this.gpu.fill(this.grads, 0);
  }

  async read(name: string): Promise<Float32Array> {
    return await this.gpu.read(this.viewOf(this.values, name));
  }

  async readGrad(name: string): Promise<Float32Array> {
    return await this.gpu.read(this.viewOf(this.grads, name));
  }

  /** Overwrite one parameter's values (in command order). */
  load(name: string, data: Float32Array): void {
    const s = this.slot(name);
    if (data.length !== s.size) {
      throw new RangeError(`ParamStore.load ${name}: ${data.length} values, want ${s.size}`);
    }
    this.gpu.upload(this.view(this.values, s), data);
  }

  /** Every parameter's values on the host (one readback). */
  async toHost(): Promise<Map<string, Float32Array>> {
    return this.split(await this.gpu.read(this.values));
  }

  /** Cut a flat host array of this layout into per-parameter arrays (copies). */
  split(flat: Float32Array): Map<string, Float32Array> {
    if (flat.length !== this.total) {
      throw new RangeError(`ParamStore.split: ${flat.length} values, want ${this.total}`);
    }
    return new Map(this.slots.map((s) => [s.name, flat.slice(s.offset, s.offset + s.size)]));
  }

  /** A flat host array of this layout from per-parameter arrays (padding zero); missing names throw. */
  join(data: ReadonlyMap<string, Float32Array>): Float32Array {
    const flat = new Float32Array(this.total);
    for (const s of this.slots) {
      const d = data.get(s.name);
      if (!d) throw new Error(`ParamStore: no values for ${s.name}`);
      if (d.length !== s.size) {
        throw new RangeError(`ParamStore: ${s.name} has ${d.length} values, want ${s.size}`);
      }
      flat.set(d, s.offset);
    }
    return flat;
  }

  /** Copy all values from a store of the same layout (in command order). */
  copyFrom(other: ParamStore): void {
    this.checkSameLayout(other);
    this.gpu.copy(other.values, this.values);
  }

  checkSameLayout(other: ParamStore): void {
    const sig = (p: ParamStore) => p.slots.map((s) => `${s.name}:${s.offset}:${s.shape}`).join("|");
    if (other.total !== this.total || sig(other) !== sig(this)) {
      throw new Error("ParamStore: layouts differ");
    }
  }

  dispose(): void {
    this.values.dispose();
    this.grads.dispose();
    this.vars.clear();
  }

  private uploadAll(data: ReadonlyMap<string, Float32Array>): void {
    this.gpu.upload(this.values, this.join(data));
  }

  private view(flat: Tensor, s: ParamSlot): Tensor {
    if (flat.size !== this.total) {
      throw new RangeError(`ParamStore: flat tensor of ${flat.size}, want ${this.total}`);
    }
    return new Tensor(this.gpu, flat.buffer, s.shape, "f32", flat.offset + s.offset * 4, false);
  }
}
