/** A host batch on the GPU: images f32 [N, C, H, W] and labels u32 [N], ready for the model and the loss. */
import type { Gpu } from "../gpu/context.ts";
import type { Tensor } from "../tensor.ts";
import type { Batch } from "./batches.ts";

export function batchToGpu(gpu: Gpu, batch: Batch): { images: Tensor; labels: Tensor } {
  return {
    images: gpu.tensor(batch.images, batch.shape),
    labels: gpu.tensor(batch.labels, [batch.labels.length]),
  };
}
