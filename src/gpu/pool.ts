/**
 * Buffer pool: buffers are reused by size class so that a steady-state training step or attack step
 * allocates nothing. `liveBytes` counts bytes handed out and not yet released; `highWater` its maximum
 * (the memory tests read these).
 */

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Round up to a size class: multiples of 1/8 of the next lower power of two, at least 256 bytes. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 4) * 4);
  const p = 2 ** Math.floor(Math.log2(b));
  const step = Math.max(256, p / 8);
  return Math.ceil(b / step) * step;
}

let nextId = 1;
/** Numeric ids for buffers, used as bind-group cache keys. */
export const bufferIds = new WeakMap<GPUBuffer, number>();
export function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, id = nextId++);
  return id;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  liveBytes = 0;
  highWater = 0;
  allocatedBytes = 0;

  constructor(private device: GPUDevice, private maxBufferSize: number) {}

  acquire(bytes: number, label = "pooled"): GPUBuffer {
    const size = sizeClass(bytes);
    if (size > this.maxBufferSize) {
      throw new RangeError(
        `${label}: buffer of ${bytes} bytes exceeds the device limit ${this.maxBufferSize}`,
      );
    }
    const list = this.free.get(size);
    const buf = list?.pop() ?? this.create(size, label);
    this.liveBytes += size;
    if (this.liveBytes > this.highWater) this.highWater = this.liveBytes;
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.liveBytes -= size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, list = []);
    list.push(buf);
  }

  /** Start a new high-water measurement from the current live bytes. */
  resetHighWater(): void {
    this.highWater = this.liveBytes;
  }

  /** Destroy every free buffer (memory returns to the driver at the next device poll). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.allocatedBytes = this.liveBytes;
    this.free.clear();
  }

  private create(size: number, label: string): GPUBuffer {
    this.allocatedBytes += size;
    return this.device.createBuffer({ size, usage: USAGE, label });
  }
}
