/**
 * The persistent GPU inputs of a training step: a batch's images (f32 NCHW) and labels (u32) packed in one
 * buffer, so that a step makes exactly one upload and allocates nothing. Labels start at the next
 * 256-byte boundary after the images, so both views can be bound on their own.
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, Tensor } from "../tensor.ts";
import type { Batch } from "../data/batches.ts";

const ALIGN_FLOATS = 64;

export class BatchInputs {
  readonly images: Tensor;
  readonly labels: Tensor;
  private readonly packed: Tensor;
  private readonly hostImages: Float32Array;
  private readonly hostLabels: Uint32Array;
  private readonly hostAll: Float32Array;

  constructor(private readonly gpu: Gpu, readonly shape: readonly [number, number, number, number]) {
    const n = shape[0];
    const imageFloats = shape.reduce((a, b) => a * b, 1);
    const labelsAt = Math.ceil(imageFloats / ALIGN_FLOATS) * ALIGN_FLOATS;
    const total = labelsAt + Math.ceil(n / ALIGN_FLOATS) * ALIGN_FLOATS;
    this.packed = keep(gpu.zeros([total]));
    const at = this.packed.offset;
    this.images = new Tensor(gpu, this.packed.buffer, shape, "f32", at, false);
    this.labels = new Tensor(gpu, this.packed.buffer, [n], "u32", at + labelsAt * 4, false);
    const host = new ArrayBuffer(total * 4);
    this.hostAll = new Float32Array(host);
    this.hostImages = new Float32Array(host, 0, imageFloats);
    this.hostLabels = new Uint32Array(host, labelsAt * 4, n);
  }

  /** Write a batch (of exactly this shape) to the GPU: one upload, after all recorded work. */
  upload(batch: Batch): void {
    if (batch.shape.join() !== this.shape.join()) {
      throw new RangeError(`batch of shape [${batch.shape}] for inputs of shape [${this.shape}]`);
    }
    this.write(batch.images, batch.labels);
  }

  /** Write images (and labels) of at most this shape's size; the rest of the buffers keeps its contents. */
  write(images: Float32Array, labels: Uint32Array | null = null): void {
    this.hostImages.set(images);
    if (labels) this.hostLabels.set(labels);
    this.gpu.upload(this.packed, this.hostAll);
  }

  dispose(): void {
    this.packed.dispose();
  }
}
