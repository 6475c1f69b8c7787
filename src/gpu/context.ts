/**
 * The effectful GPU core: one device per process, a pipeline cache, a buffer pool, and a recorder that
 * batches dispatches into few submits. Readback (`read`) is the only path that waits for the GPU.
 *
 * Ordering rule: `queue.writeBuffer` runs before any command that has been encoded but not submitted, so
 * `upload` flushes pending work first. Device errors are caught with error scopes around every submit
 * and pipeline creation and surface as `GpuOpError` at the next `read` or `sync`.
 */
import { GpuOpError, NoAdapterError } from "./errors.ts";
import { bufferId, BufferPool } from "./pool.ts";
import { type DType, Tensor } from "../tensor.ts";
import { wgsl } from "./template.ts";
import fillSource from "../../shaders/fill.wgsl" with { type: "text" };

/** A compiled compute pipeline with a stable id for bind-group caching. */
export interface Kernel {
  readonly id: number;
  readonly key: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/** Something that can be bound as a storage buffer. */
export type Binding = Tensor | { buffer: GPUBuffer; offset?: number; size?: number };

export type Workgroups = number | readonly [number, number?, number?];

/** Adapter facts that kernels use to choose a variant. */
export interface AdapterFacts {
  description: string;
  vendor: string;
  architecture: string;
  backend: string;
  isSoftware: boolean;
  features: string[];
  limits: Record<string, number>;
}

const LIMIT_KEYS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxBindGroups",
  "maxBindingsPerBindGroup",
  "minStorageBufferOffsetAlignment",
] as const;

/** Dispatches recorded before a submit. Large enough to amortise a submit, small enough to keep memory
 * reclaimable. */
const FLUSH_EVERY = 128;
const MAX_DIM = 65535;

export class Gpu {
  readonly pool: BufferPool;
  /** Fill every freshly allocated tensor with NaN (tests turn this on so unwritten outputs fail). */
  poison = false;
  /** Counters for benchmarks and the "no submit per op" tests. */
  readonly stats = { dispatches: 0, submits: 0, readbacks: 0, pipelines: 0 };

  private kernels = new Map<string, Kernel>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private pendingLabels: string[] = [];
  private errorChecks: Promise<GpuOpError | null>[] = [];
  private readStaging: GPUBuffer | null = null;

  constructor(readonly device: GPUDevice, readonly adapter: AdapterFacts) {
    this.pool = new BufferPool(device, adapter.limits.maxBufferSize);
  }

  // ---------------------------------------------------------------- kernels

  /** Compile (once) the kernel named `key`; `source` is only called on a cache miss. */
  kernel(key: string, source: () => string, entryPoint = "main"): Kernel {
    const hit = this.kernels.get(key);
    if (hit) return hit;
    const code = source();
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code, label: key });
    const pipeline = this.device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint },
      label: key,
    });
    this.watch(this.device.popErrorScope(), `compiling kernel ${key}`);
    const k: Kernel = { id: this.kernels.size + 1, key, pipeline, layout: pipeline.getBindGroupLayout(0) };
    this.kernels.set(key, k);
    this.stats.pipelines++;
    return k;
  }

  /** Record one dispatch. Bindings are bound in order to @binding(0), @binding(1), ... of group 0. */
  dispatch(kernel: Kernel, bindings: readonly Binding[], workgroups: Workgroups): void {
    const [x, y = 1, z = 1] = typeof workgroups === "number" ? gridFor(workgroups) : workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    if (x > MAX_DIM || y > MAX_DIM || z > MAX_DIM) {
      throw new RangeError(`${kernel.key}: ${x}x${y}x${z} workgroups exceed ${MAX_DIM} per dimension`);
    }
    const bg = this.bindGroup(kernel, bindings);
    if (!this.pass) {
      this.encoder = this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass.setPipeline(kernel.pipeline);
    this.pass.setBindGroup(0, bg);
    this.pass.dispatchWorkgroups(x, y, z);
    this.pendingLabels.push(kernel.key);
    this.stats.dispatches++;
    if (++this.pending >= FLUSH_EVERY) this.flush();
  }

  /** Submit what has been recorded. Cheap; does not wait. */
  flush(): void {
    if (!this.encoder) return;
    this.pass!.end();
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    const cmd = this.encoder.finish();
    this.device.queue.submit([cmd]);
    const labels = this.pendingLabels;
    const what = `a batch of ${labels.length} dispatches (${[...new Set(labels)].slice(0, 6).join(", ")})`;
    this.watch(this.device.popErrorScope(), what);
    this.watch(this.device.popErrorScope(), what);
    this.stats.submits++;
    this.encoder = null;
    this.pass = null;
    this.pending = 0;
    this.pendingLabels = [];
  }

  /** Wait for all submitted work and report any device error. Also lets Deno reclaim dropped objects. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  // ---------------------------------------------------------------- tensors

  /** A new tensor with undefined contents (NaN when `poison` is on). */
  empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`bad tensor shape [${shape}]`);
    const buf = this.pool.acquire(size * 4);
    const t = new Tensor(this, buf, shape, dtype, 0, true);
    if (this.poison) this.fillBits(t, 0x7fc00000);
    return t;
  }

  zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const t = this.empty(shape, dtype);
    this.fillBits(t, 0);
    return t;
  }

  /** Fill with a float32 (or, for u32/i32 tensors, an integer) value. */
  fill(t: Tensor, value: number): void {
    const v = new DataView(new ArrayBuffer(4));
    if (t.dtype === "f32") v.setFloat32(0, value, true);
    else if (t.dtype === "i32") v.setInt32(0, value, true);
    else v.setUint32(0, value, true);
    this.fillBits(t, v.getUint32(0, true));
  }

  private fillBits(t: Tensor, bits: number): void {
    // bind at most maxStorageBufferBindingSize bytes at a time (128 MiB on llvmpipe), in aligned chunks
    const maxBinding = this.adapter.limits.maxStorageBufferBindingSize ?? 1 << 27;
    const chunk = Math.floor(maxBinding / 4 / 256) * 256;
    for (let start = 0; start < t.size; start += chunk) {
      const n = Math.min(chunk, t.size - start);
      const k = this.kernel(`fill:${n}:${bits}`, () => wgsl(fillSource, { N: n, BITS: bits >>> 0 }));
      this.dispatch(k, [{ buffer: t.buffer, offset: t.offset + start * 4, size: n * 4 }], Math.ceil(n / 64));
    }
  }

  /** A tensor holding `data` (float32 unless the typed array says otherwise). */
  tensor(
    data: ArrayLike<number> | Float32Array | Uint32Array | Int32Array,
    shape?: readonly number[],
  ): Tensor {
    const dtype: DType = data instanceof Uint32Array ? "u32" : data instanceof Int32Array ? "i32" : "f32";
    const s = shape ?? [data.length];
    const t = this.empty(s, dtype);
    this.upload(t, data);
    return t;
  }

  /** Write host data into a tensor, after everything recorded so far (flushes pending work). */
  upload(t: Tensor, data: ArrayLike<number> | Float32Array | Uint32Array | Int32Array): void {
    if (data.length !== t.size) {
      throw new RangeError(`upload: ${data.length} values for a tensor of shape [${t.shape}]`);
    }
    const typed = ArrayBuffer.isView(data)
      ? data as Float32Array | Uint32Array | Int32Array
      : t.dtype === "u32"
      ? Uint32Array.from(data)
      : t.dtype === "i32"
      ? Int32Array.from(data)
      : Float32Array.from(data);
    this.flush();
    this.device.queue.writeBuffer(
      t.buffer,
      t.offset,
      typed.buffer as ArrayBuffer,
      typed.byteOffset,
      typed.byteLength,
    );
  }

  /** Copy src into dst (same size) in command order. */
  copy(src: Tensor, dst: Tensor): void {
    if (src.size !== dst.size) throw new RangeError(`copy: sizes ${src.size} and ${dst.size} differ`);
    if (!this.encoder) {
      this.encoder = this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    // copies cannot happen inside a compute pass: end it and open a new one after the copy
    this.pass!.end();
    this.encoder.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, src.bytes);
    this.pass = this.encoder.beginComputePass();
  }

  /** Read a tensor back to the host. The only call that waits for the GPU (>= 11 ms on Deno). */
  async read(t: Tensor): Promise<Float32Array> {
    const raw = await this.readBytes(t);
    return new Float32Array(raw);
  }

  async readU32(t: Tensor): Promise<Uint32Array> {
    return new Uint32Array(await this.readBytes(t));
  }

  async readI32(t: Tensor): Promise<Int32Array> {
    return new Int32Array(await this.readBytes(t));
  }

  /** Reads share one staging buffer, so they are serialised. */
  private readQueue: Promise<unknown> = Promise.resolve();

  private readBytes(t: Tensor): Promise<ArrayBuffer> {
    const run = this.readQueue.then(() => this.readNow(t));
    this.readQueue = run.catch(() => {});
    return run;
  }

  private async readNow(t: Tensor): Promise<ArrayBuffer> {
    const bytes = t.bytes;
    if (!this.readStaging || this.readStaging.size < bytes) {
      this.readStaging?.destroy();
      this.readStaging = this.device.createBuffer({
        size: Math.max(bytes, 1 << 16),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        label: "readback",
      });
    }
    const staging = this.readStaging;
    if (!this.encoder) {
      this.encoder = this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass!.end();
    this.encoder.copyBufferToBuffer(t.buffer, t.offset, staging, 0, bytes);
    this.pass = this.encoder.beginComputePass();
    this.pendingLabels.push(`read`);
    this.flush();
    this.stats.readbacks++;
    await staging.mapAsync(GPUMapMode.READ, 0, bytes);
    const out = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    await this.checkErrors();
    return out;
  }

  // ---------------------------------------------------------------- internals

  private bindGroup(kernel: Kernel, bindings: readonly Binding[]): GPUBindGroup {
    let key = String(kernel.id);
    const entries: GPUBindGroupEntry[] = [];
    for (let i = 0; i < bindings.length; i++) {
      const b = bindings[i];
      const buffer = b.buffer;
      const offset = b instanceof Tensor ? b.offset : b.offset ?? 0;
      const size = b instanceof Tensor ? b.bytes : b.size ?? buffer.size - offset;
      key += `|${bufferId(buffer)}:${offset}:${size}`;
      entries.push({ binding: i, resource: { buffer, offset, size } });
    }
    const hit = this.bindGroups.get(key);
    if (hit) return hit;
    if (this.bindGroups.size > 20000) this.bindGroups.clear();
    const bg = this.device.createBindGroup({ layout: kernel.layout, entries, label: kernel.key });
    this.bindGroups.set(key, bg);
    return bg;
  }

  private watch(p: Promise<GPUError | null>, what: string): void {
    // record the outcome instead of keeping a rejected promise, which Deno would report as unhandled
    this.errorChecks.push(p.then(
      (e) => {
        if (!e) return null;
        const kind = e.constructor?.name === "GPUOutOfMemoryError" ? "out-of-memory" : "validation";
        return new GpuOpError(what, kind, e.message.split("\n").slice(0, 4).join(" "));
      },
      (e) => new GpuOpError(what, "internal", String(e)),
    ));
  }

  private async checkErrors(): Promise<void> {
    const checks = this.errorChecks;
    this.errorChecks = [];
    const first = (await Promise.all(checks)).find((e) => e !== null);
    if (first) throw first;
  }
}

/** Split a 1-D workgroup count into a 2-D grid within the per-dimension limit. Shaders recover the
 * linear index as `wid.x + wid.y * nwg.x`. */
export function gridFor(n: number): [number, number, number] {
  if (n <= MAX_DIM) return [n, 1, 1];
  const y = Math.ceil(n / MAX_DIM);
  return [Math.ceil(n / y), y, 1];
}

// ---------------------------------------------------------------- acquisition

let current: Promise<Gpu> | null = null;

/** The process's GPU, acquired once with the adapter's limits. Throws NoAdapterError when none. */
export function getGpu(): Promise<Gpu> {
  current ??= acquire().catch((e) => {
    current = null;
    throw e;
  });
  return current;
}

async function acquire(): Promise<Gpu> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new NoAdapterError();
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null);
  if (!adapter) throw new NoAdapterError();
  const limits: Record<string, number> = {};
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMIT_KEYS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === "number") {
      limits[k] = v;
      if (k !== "minStorageBufferOffsetAlignment") requiredLimits[k] = v;
    }
  }
  const wanted = ["timestamp-query", "shader-f16"] as GPUFeatureName[];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  // deno-lint-ignore no-explicit-any
  const info: any = adapter.info ?? {};
  const description = String(info.description || info.device || "unknown adapter");
  const isSoftware =
    Boolean(info.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter) ||
    /llvmpipe|lavapipe|swiftshader|software/i.test(description);
  const facts: AdapterFacts = {
    description,
    vendor: String(info.vendor ?? ""),
    architecture: String(info.architecture ?? ""),
    backend: /vulkan|lavapipe/i.test(description)
      ? "vulkan"
      : /llvmpipe/i.test(description)
      ? "gl"
      : "unknown",
    isSoftware,
    features: [...adapter.features].sort(),
    limits,
  };
  return new Gpu(device, facts);
}
