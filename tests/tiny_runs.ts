/** Tiny MNIST-sized run folders with random weights, laid out as the training commands write them. */
import type { Gpu } from "../src/gpu/context.ts";
import { saveParams } from "../src/nn/model_io.ts";
import { createUNet, TINY_UNET, type UNetConfig } from "../src/nn/unet.ts";
import { type CnnConfig, cnnParamDecls, MNIST_CNN } from "../src/nn/classifier.ts";
import { initParams } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/params.ts";

/** TINY_UNET at MNIST's 28x28x1. */
export const TINY_MNIST_UNET: UNetConfig = { ...TINY_UNET, sample_size: 28, in_channels: 1, out_channels: 1 };

/** MNIST_CNN shrunk to 4 channels per conv and 8 hidden units. */
export const TINY_MNIST_CNN: CnnConfig = { ...MNIST_CNN, channels: [4, 4, 4], hidden: 8 };

/**
 * The tiny CNN with every bias at 0.1. With the default (uniform, PyTorch-style) initialisation about 2% of
 * seeds give a net whose ReLUs are all dead on MNIST digits (measured: 54 of seeds 1-3000 on the first 4 test
 * images), so its input gradient is zero and no attack can move an image; at 0.1, none of those 3000 seeds.
 */
function liveTinyCnn(gpu: Gpu, seed: number): ParamStore {
  const inits = initParams(cnnParamDecls(TINY_MNIST_CNN), seed);
  for (const p of inits) if (p.name.endsWith("bias")) p.init.fill(0.1);
  return ParamStore.create(gpu, inits);
}

/**
 * Write `dir/cls` (a classifier run) and one DDPM run folder per name in `ddpms` (default `["ddpm"]`), all
 * DDPM folders holding the same EMA weights, with a linear schedule of `timesteps` steps.
 */
export async function writeTinyRunFolders(
  gpu: Gpu,
  dir: string,
  seed: number,
  { timesteps = 1000, ddpms = ["ddpm"] }: { timesteps?: number; ddpms?: string[] } = {},
): Promise<void> {
  const u = createUNet(gpu, TINY_MNIST_UNET, seed), c = liveTinyCnn(gpu, seed + 1);
  try {
    for (const name of ["cls", ...ddpms]) await Deno.mkdir(`${dir}/${name}`, { recursive: true });
    await saveParams(c, `${dir}/cls/model.safetensors`);
    for (const name of ddpms) await saveParams(u, `${dir}/${name}/ema.safetensors`);
  } finally {
    u.dispose();
    c.dispose();
  }
  const cls = {
    settings: { kind: "classifier", dataset: "mnist" },
    model: { arch: "cnn", config: TINY_MNIST_CNN },
  };
  await Deno.writeTextFile(`${dir}/cls/run.json`, JSON.stringify(cls));
  const settings = { kind: "ddpm", dataset: "mnist", timesteps, betaStart: 1e-4, betaEnd: 0.02 };
  for (const name of ddpms) {
    await Deno.writeTextFile(`${dir}/${name}/run.json`, JSON.stringify({ settings, model: TINY_MNIST_UNET }));
  }
}
