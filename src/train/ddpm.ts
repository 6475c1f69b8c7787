/**
 * DDPM training (Ho et al. 2020; diffusers' train_unconditional.py): for each image a timestep
 * t ~ U{0..T-1} and noise eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and the UNet is
 * trained to predict eps with the mean squared error; AdamW with warmup and gradient-norm clipping, and
 * an EMA of the weights with diffusers' warmup schedule.
 *
 * Random draws are keyed by (seed, step) (draws.ts). The key lives on the GPU and its counter is advanced
 * on the GPU after each step, so a step uploads only its batch, and a run resumed at step s draws exactly
 * what the uninterrupted run drew.
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, type Tensor } from "../tensor.ts";
import { Batcher } from "../data/batches.ts";
import type { Batch } from "../data/batches.ts";
import type { Dataset } from "../data/dataset.ts";
import { advanceCounter, keyWords, normal, rngKey } from "../ops/random.ts";
import { AdamW, Ema } from "../ops/optim.ts";
import { backward, constant } from "../autodiff/var.ts";
import { linearSchedule, type Schedule } from "../diffusion/schedule.ts";
import { qSampleRaw } from "../diffusion/qsample.ts";
import type { ParamStore } from "../nn/params.ts";
import { createUNet, type UNetConfig, unetForward } from "../nn/unet.ts";
import type { TrainState } from "./checkpoint.ts";
import { mse } from "./losses.ts";
import { DDPM_STREAM, drawTimesteps, SITE_DROPOUT, SITE_NOISE } from "./draws.ts";
import type { DdpmSettings } from "./settings.ts";
import { StepStats } from "./stats.ts";
import { BatchInputs } from "./inputs.ts";

/** Everything a DDPM run holds on the GPU. */
export interface DdpmRun {
  gpu: Gpu;
  settings: DdpmSettings;
  config: UNetConfig;
  schedule: Schedule;
  model: ParamStore;
  ema: ParamStore;
  optimizer: AdamW;
  emaUpdater: Ema;
  batcher: Batcher;
  inputs: BatchInputs;
  /** The step's Philox key (u32[4]); its counter is the step number. */
  key: Tensor;
  stats: StepStats;
  state: TrainState;
}

/** What a run built on this one (ADDT fine-tuning) changes: its RNG stream, mirrored batches. */
export interface DdpmRunOptions {
  /** The Philox stream of the run's draws (default DDPM_STREAM). */
  stream?: number;
  /** Mirror images at random (the batcher's flip; default off). */
  flip?: boolean;
}

/** Build a fresh run (initial weights from the seed); `restore` then loads a checkpoint into it. */
export function createDdpmRun(
  gpu: Gpu,
  settings: DdpmSettings,
  unet: UNetConfig,
  train: Dataset,
  options: DdpmRunOptions = {},
): DdpmRun {
  const s = settings;
  const config = { ...unet, dropout: s.dropout ?? unet.dropout };
  const model = createUNet(gpu, config, s.seed);
  const ema = model.clone();
  const optimizer = new AdamW(model, {
    lr: s.lr,
    warmupSteps: s.warmup,
    maxGradNorm: s.gradClip ?? undefined,
    betas: s.adamBetas,
    eps: s.adamEps,
    weightDecay: s.weightDecay,
  });
  const emaUpdater = new Ema(ema, model, {
    maxDecay: s.emaMaxDecay,
    invGamma: s.emaInvGamma,
    power: s.emaPower,
  });
  const batcher = new Batcher(train, {
    batchSize: s.batchSize,
    seed: s.seed,
    range: "symmetric",
    flip: options.flip ?? false,
  });
  const inputs = new BatchInputs(gpu, [s.batchSize, train.c, train.h, train.w]);
  const key = keep(rngKey(gpu, s.seed, options.stream ?? DDPM_STREAM, 0));
  const state: TrainState = {
    kind: "ddpm",
    model,
    ema,
    optimizer,
    emaUpdater,
    seed: s.seed,
    dataset: s.dataset,
    config,
  };
  const schedule = linearSchedule(s.timesteps, s.betaStart, s.betaEnd);
  return {
    gpu,
    settings,
    config,
    schedule,
    model,
    ema,
    optimizer,
    emaUpdater,
    batcher,
    inputs,
    key,
    stats: new StepStats(gpu),
    state,
  };
}

/** Point the run's key at step `step` (after a restore): one upload, once. */
export function seekDdpmRun(run: DdpmRun, step: number): void {
  run.gpu.upload(run.key, keyWords(run.settings.seed, DDPM_STREAM, step));
}

/** Record one training step on `batch`: dispatches only, no readback, one upload. */
export function recordDdpmStep(run: DdpmRun, batch: Batch): void {
  const { gpu, key, model, schedule } = run;
  run.inputs.upload(batch);
  model.zeroGrad();
  const x0 = run.inputs.images;
  const t = drawTimesteps(gpu, x0.shape[0], schedule.T, key);
  const noise = normal(gpu, x0.shape, key, SITE_NOISE);
  const xt = qSampleRaw(gpu, x0, t, noise, schedule);
  const pred = unetForward(model, run.config, constant(xt), t, {
    train: true,
    rngKey: key,
    siteBase: SITE_DROPOUT,
  });
  const loss = mse(pred, constant(noise));
  backward(loss);
  run.optimizer.step();
  run.stats.record(loss.value, run.optimizer.lastGradNorm);
  run.emaUpdater.step();
  advanceCounter(gpu, key);
}

export function disposeDdpmRun(run: DdpmRun): void {
  for (const d of [run.model, run.ema, run.optimizer, run.emaUpdater, run.inputs, run.stats]) d.dispose();
  run.key.dispose();
}
