/**
 * Unconditional samples from a DDPM for `addt sample`: n images from pure noise in batches (no gradients;
 * one readback per batch), mapped from [-1, 1] to [0, 1] for a PNG grid. Batch b draws from the key
 * (seed, SAMPLE_STREAM, b) through `generate`, so a seed and a batch size give the same images bit for bit.
 */
import type { Gpu } from "../gpu/context.ts";
import { scopeAsync } from "../tensor.ts";
import { rngKey } from "../ops/random.ts";
import { type EpsModel, generate, type SamplerOptions } from "./sampler.ts";

/** The Philox stream of generation ("SAMP"), apart from every training and evaluation stream. */
export const SAMPLE_STREAM = 0x53414d50;

/** Images per batch: 64 MNIST images of the shipped UNet need ~30 MiB of activations. */
export const SAMPLE_BATCH = 64;

export interface SampleImagesOptions extends SamplerOptions {
  n: number;
  /** Reverse strides from T (diffusers' set_timesteps). */
  steps: number;
  seed: number;
  /** Images generated at once (part of the randomness: batch b uses key counter b). */
  batchSize?: number;
  /** Called after each batch with the images done so far. */
  onBatch?: (done: number) => void;
}

/** n samples of `imageShape` [C, H, W] in [0, 1], flat NCHW. */
export async function sampleImages(
  gpu: Gpu,
  model: EpsModel,
  imageShape: readonly [number, number, number],
  options: SampleImagesOptions,
): Promise<Float32Array> {
  const { n, steps, seed } = options;
  const batch = options.batchSize ?? SAMPLE_BATCH;
  if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`sampleImages: n ${n}`);
  if (!(Number.isInteger(batch) && batch >= 1)) throw new RangeError(`sampleImages: batch ${batch}`);
  const per = imageShape[0] * imageShape[1] * imageShape[2];
  const out = new Float32Array(n * per);
  for (let b = 0, done = 0; done < n; b++) {
    const count = Math.min(batch, n - done);
    const values = await scopeAsync(async () => {
      const key = rngKey(gpu, seed, SAMPLE_STREAM, b);
      return await gpu.read(generate(model, [count, ...imageShape], steps, key, options));
    });
    for (let i = 0; i < values.length; i++) out[done * per + i] = (values[i] + 1) / 2;
    done += count;
    options.onBatch?.(done);
  }
  return out;
}
