/**
 * Optimizers over a ParamStore's flat buffers (shaders/optim.wgsl): one dispatch per kernel for the whole
 * model (split into chunks only past the adapter's storage-binding size), no host round trip and no new
 * pipeline per step. A step is: global gradient L2 norm (two-pass reduction, which also increments the
 * GPU-side step counter), then the update with gradient-norm clipping folded in. The norm and the step
 * count stay readable for logging; moments and the step count save and load as host arrays.
 */
import type { Binding, Gpu } from "../gpu/context.ts";
import { type Consts, f32, wgsl } from "../gpu/template.ts";
import { keep, type Tensor } from "../tensor.ts";
import type { ParamStore } from "../nn/params.ts";
import template from "../../shaders/optim.wgsl" with { type: "text" };

function kernel(gpu: Gpu, consts: Consts) {
  const key = "optim:" + Object.entries(consts).map(([k, v]) => `${k}=${v}`).join(",");
  return gpu.kernel(key, () => wgsl(template, consts));
}

/** Tests shrink `maxChunkFloats` (a multiple of 64) to exercise the chunked path; null = adapter limit. */
export const optimTuning: { maxChunkFloats: number | null } = { maxChunkFloats: null };

/** Ranges [start, start + len) in floats, len a multiple of 64, each within the storage-binding limit. */
function chunksOf(gpu: Gpu, total: number): { start: number; len: number }[] {
  const limit = gpu.adapter.limits.maxStorageBufferBindingSize ?? 128 << 20;
  const maxLen = optimTuning.maxChunkFloats ?? Math.max(64, Math.floor(limit / 4 / 64) * 64);
  const out = [];
  for (let start = 0; start < total; start += maxLen) {
    out.push({ start, len: Math.min(maxLen, total - start) });
  }
  return out;
}

/** The part of a flat tensor covering a chunk, as a binding. */
function bindChunk(t: Tensor, c: { start: number; len: number }): Binding {
  return { buffer: t.buffer, offset: t.offset + c.start * 4, size: c.len * 4 };
}

/** Records the global L2 norm of a flat tensor (size a multiple of 64) into `norm` ([1]). */
class NormPlan {
  private readonly chunks: { start: number; len: number }[];
  /** Partial sums per chunk: a multiple of 64, so each chunk's parts can be bound at an aligned offset. */
  private readonly ps: number;

  constructor(private readonly gpu: Gpu, total: number) {
    if (total % 64 !== 0) throw new RangeError(`gradNorm: flat size ${total} is not a multiple of 64`);
    this.chunks = chunksOf(gpu, total);
    // a few thousand partial sums at most: the final pass is one serial invocation
    const len4 = this.chunks[0].len / 4;
    this.ps = Math.min(4096, Math.ceil(Math.ceil(len4 / 64) / 64) * 64);
  }

  /** Dispatch the reduction; with `step`, the final pass also increments the step counter. */
  record(flat: Tensor, norm: Tensor, step: Tensor | null): void {
    const { gpu, ps } = this;
    const part = gpu.empty([this.chunks.length * ps]);
    this.chunks.forEach((c, k) => {
      const kern = kernel(gpu, { NORM_PARTIAL: true, PS: ps, LEN4: c.len / 4 });
      const partView = { buffer: part.buffer, offset: part.offset + k * ps * 4, size: ps * 4 };
      gpu.dispatch(kern, [bindChunk(flat, c), partView], Math.ceil(ps / 64));
    });
    const fin = kernel(gpu, { NORM_FINAL: true, TOTALP: part.size, INC_STEP: step !== null });
    gpu.dispatch(fin, step ? [part, norm, step] : [part, norm], 1);
    part.dispose();
  }
}

/** The global L2 norm of a flat tensor whose size is a multiple of 64 (a ParamStore's grads), as [1]. */
export function gradNorm(gpu: Gpu, flat: Tensor): Tensor {
  const norm = gpu.empty([1]);
  new NormPlan(gpu, flat.size).record(flat, norm, null);
  return norm;
}

export interface ScheduleOptions {
  lr: number;
  /** Linear warmup: step t (1-based) uses lr * min(1, (t - 1) / warmupSteps). 0 = constant lr. */
  warmupSteps?: number;
  /** Clip the global gradient norm to this (torch.nn.utils.clip_grad_norm_); unset = no clipping. */
  maxGradNorm?: number;
}

export interface AdamWOptions extends ScheduleOptions {
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export interface SgdOptions extends ScheduleOptions {
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** Host copy of an optimizer's state: the step count and flat slot buffers in the store's layout. */
export interface OptimizerState {
  step: number;
  slots: Record<string, Float32Array>;
}

/** What AdamW and SGD share: the step counter, the norm, the schedule and clipping constants, and slots. */
abstract class FlatOptimizer {
  /** Completed steps (u32 [1]); incremented on the GPU at the start of each step. */
  readonly stepCount: Tensor;
  /** Global gradient norm before clipping of the latest step ([1]). */
  readonly lastGradNorm: Tensor;
  protected readonly chunks: { start: number; len: number }[];
  private readonly norm: NormPlan;
  /** A copy of the caller's options (setLearningRate changes it). */
  protected readonly schedule: ScheduleOptions;

  protected constructor(
    readonly store: ParamStore,
    schedule: ScheduleOptions,
    /** Flat state buffers by name, zero-initialised, in the store's layout. */
    protected readonly slots: Record<string, Tensor>,
  ) {
    const gpu = store.gpu;
    this.schedule = { ...schedule };
    this.stepCount = keep(gpu.zeros([1], "u32"));
    this.lastGradNorm = keep(gpu.zeros([1]));
    this.chunks = chunksOf(gpu, store.total);
    this.norm = new NormPlan(gpu, store.total);
  }

  /** Record one optimizer step over the store's current gradients. */
  step(): void {
    this.norm.record(this.store.grads, this.lastGradNorm, this.stepCount);
    for (const c of this.chunks) this.update(c);
  }

  protected abstract update(c: { start: number; len: number }): void;

  /** Constants shared by the update kernels (every one is in the kernel key). */
  protected scheduleConsts(): Consts {
    const { lr, warmupSteps = 0, maxGradNorm } = this.schedule;
    if (!(lr >= 0)) throw new RangeError(`optimizer: bad learning rate ${lr}`);
    return {
      UPDATE: true,
      LR: f32(lr),
      WARMUP: warmupSteps > 0 ? f32(warmupSteps) : 0,
      CLIP: maxGradNorm !== undefined,
      MAX_NORM: f32(maxGradNorm ?? 0),
    };
  }

  /** Change the learning rate (compiles one kernel per distinct value). */
  setLearningRate(lr: number): void {
    this.schedule.lr = lr;
  }

  protected bindings(c: { start: number; len: number }, slots: Tensor[]): Binding[] {
    return [this.store.values, this.store.grads, ...slots].map((t) => bindChunk(t, c));
  }

  async readStep(): Promise<number> {
    return (await this.store.gpu.readU32(this.stepCount))[0];
  }

  async readGradNorm(): Promise<number> {
    return (await this.store.gpu.read(this.lastGradNorm))[0];
  }

  async saveState(): Promise<OptimizerState> {
    const slots: Record<string, Float32Array> = {};
    for (const [name, t] of Object.entries(this.slots)) slots[name] = await this.store.gpu.read(t);
    return { step: await this.readStep(), slots };
  }

  loadState(state: OptimizerState): void {
    const gpu = this.store.gpu;
    for (const [name, t] of Object.entries(this.slots)) {
      const data = state.slots[name];
      if (!data) throw new Error(`optimizer state: missing slot ${name}`);
      gpu.upload(t, data);
    }
    gpu.upload(this.stepCount, new Uint32Array([state.step]));
  }

  dispose(): void {
    for (const t of [this.stepCount, this.lastGradNorm, ...Object.values(this.slots)]) t.dispose();
  }
}

const flatZeros = (store: ParamStore) => keep(store.gpu.zeros([store.total]));

/** AdamW with PyTorch semantics (torch.optim.AdamW, amsgrad off). Slots: m, v. */
export class AdamW extends FlatOptimizer {
  constructor(store: ParamStore, private readonly opts: AdamWOptions) {
    super(store, opts, { m: flatZeros(store), v: flatZeros(store) });
  }

  protected update(c: { start: number; len: number }): void {
    const { betas: [b1, b2] = [0.9, 0.999], eps = 1e-8, weightDecay = 1e-2 } = this.opts;
    const consts: Consts = {
      ADAMW: true,
      ...this.scheduleConsts(),
      LEN4: c.len / 4,
      B1: f32(b1),
      B2: f32(b2),
      ONE_MINUS_B1: f32(1 - b1),
      ONE_MINUS_B2: f32(1 - b2),
      LN_B1: f32(Math.log(b1)),
      LN_B2: f32(Math.log(b2)),
      EPS: f32(eps),
      WD: f32(weightDecay),
    };
    const b = this.bindings(c, [this.slots.m, this.slots.v]);
    b.push(this.stepCount);
    if (consts.CLIP) b.push(this.lastGradNorm);
    this.store.gpu.dispatch(kernel(this.store.gpu, consts), b, Math.ceil(c.len / 4 / 64));
  }
}

/** SGD with momentum, PyTorch semantics (torch.optim.SGD). Slot: momentum. */
export class SgdMomentum extends FlatOptimizer {
  constructor(store: ParamStore, private readonly opts: SgdOptions) {
    super(store, opts, { momentum: flatZeros(store) });
  }

  protected update(c: { start: number; len: number }): void {
    const { momentum = 0.9, weightDecay = 0, nesterov = false } = this.opts;
    // PyTorch ignores dampening without momentum
    const dampening = momentum === 0 ? 0 : this.opts.dampening ?? 0;
    const consts: Consts = {
      SGD: true,
      ...this.scheduleConsts(),
      LEN4: c.len / 4,
      MOMENTUM: f32(momentum),
      ONE_MINUS_DAMPENING: f32(1 - dampening),
      WD: f32(weightDecay),
      NESTEROV: nesterov,
    };
    const b = this.bindings(c, [this.slots.momentum]);
    b.push(this.stepCount);
    if (consts.CLIP) b.push(this.lastGradNorm);
    this.store.gpu.dispatch(kernel(this.store.gpu, consts), b, Math.ceil(c.len / 4 / 64));
  }
}

/** EMA decay: diffusers' EMAModel with use_ema_warmup (defaults as there), or a constant. */
export type EmaOptions =
  | { decay: number }
  | { maxDecay?: number; minDecay?: number; invGamma?: number; power?: number; updateAfterStep?: number };

/**
 * Exponential moving average of a model's weights into a store of the same layout:
 * ema -= (1 - d) * (ema - p). With the warmup schedule, the k-th call (1-based) uses diffusers'
 * get_decay(k): d = 0 while k - updateAfterStep - 1 <= 0 (a copy), else
 * clamp(1 - (1 + s / invGamma)^-power, minDecay, maxDecay) with s = k - updateAfterStep - 1.
 */
export class Ema {
  /** Completed EMA updates (u32 [1]). */
  readonly stepCount: Tensor;
  private readonly chunks: { start: number; len: number }[];

  constructor(readonly ema: ParamStore, readonly model: ParamStore, private readonly opts: EmaOptions = {}) {
    ema.checkSameLayout(model);
    this.stepCount = keep(ema.gpu.zeros([1], "u32"));
    this.chunks = chunksOf(ema.gpu, ema.total);
  }

  /** Record one EMA update from the model's current values. */
  step(): void {
    const gpu = this.ema.gpu;
    for (const c of this.chunks) {
      const consts: Consts = { EMA: true, LEN4: c.len / 4, ...this.decayConsts() };
      const b = [bindChunk(this.ema.values, c), bindChunk(this.model.values, c)];
      if (consts.EMA_WARMUP) b.push(this.stepCount);
      gpu.dispatch(kernel(gpu, consts), b, Math.ceil(c.len / 4 / 64));
    }
    gpu.dispatch(kernel(gpu, { INCREMENT: true }), [this.stepCount], 1);
  }

  private decayConsts(): Consts {
    const o = this.opts;
    if ("decay" in o) return { OMD: f32(1 - o.decay) };
    const { maxDecay = 0.9999, minDecay = 0, invGamma = 1, power = 0.75, updateAfterStep = 0 } = o;
    return {
      EMA_WARMUP: true,
      UPDATE_AFTER: f32(updateAfterStep),
      INV_GAMMA: f32(invGamma),
      POWER: f32(power),
      MIN_OMD: f32(1 - maxDecay),
      MAX_OMD: f32(1 - minDecay),
    };
  }

  async readStep(): Promise<number> {
    return (await this.ema.gpu.readU32(this.stepCount))[0];
  }

  /** The EMA's own state is its counter (its weights are the ema store: save them with toHost). */
  loadStep(step: number): void {
    this.ema.gpu.upload(this.stepCount, new Uint32Array([step]));
  }

  dispose(): void {
    this.stepCount.dispose();
  }
}
