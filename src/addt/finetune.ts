/**
 * One ADDT fine-tuning step on a batch (x0 in [-1, 1], labels y), as the authors' train_ADDT.py:
 *
 *   t ~ U{0..T-1} per sample; coefficient rows from t (lambda.ts)
 *   d = CGPO(...) (addt, mse) | PGD delta (linf) | none (clean)
 *   eps = N(0, I) fresh; target = cEps eps + cD d; x_t = sqrt(abar) x0 + sqrt(1 - abar) target
 *   loss = MSE(eps_theta(x_t, t), target); AdamW (warmup, clip), EMA
 *
 * The model starts from the source DDPM's EMA weights (both the trained weights and the EMA), the EMA's
 * warmup counter from 0 (diffusers' EMAModel built on the loaded model). Every draw is keyed by
 * (seed, ADDT_STREAM, step) on the GPU (draws.ts) and the key's counter is advanced on the GPU, so a step
 * uploads only its batch, reads nothing back, and a resumed run repeats the uninterrupted run exactly.
 */
import type { Gpu } from "../gpu/context.ts";
import type { Tensor } from "../tensor.ts";
import type { Batch } from "../data/batches.ts";
import type { Dataset } from "../data/dataset.ts";
import { advanceCounter, keyWords, normal } from "../ops/random.ts";
import { backward, constant } from "../autodiff/var.ts";
import { qSampleRaw } from "../diffusion/qsample.ts";
import { loadParamsFrom } from "../nn/model_io.ts";
import type { SafetensorsFile } from "../io/safetensors.ts";
import { type UNetConfig, unetForward } from "../nn/unet.ts";
import type { Classifier } from "../defense/networks.ts";
import { createDdpmRun, type DdpmRun, disposeDdpmRun } from "../train/ddpm.ts";
import { mse } from "../train/losses.ts";
import { drawTimesteps } from "../train/draws.ts";
import { TrainSetupError } from "../train/errors.ts";
import { mixCoefficients, mixNoise } from "./lambda.ts";
import type { Guidance } from "./objective.ts";
import { cgpo } from "./cgpo.ts";
import { linfPerturbation } from "./linf.ts";
import { ADDT_STREAM, MAX_DROPOUT_SITES, SITE_DROPOUT, SITE_NOISE, SITE_TIMESTEPS } from "./draws.ts";
import { type FinetuneSettings, flipOf, linfBudget, mixSpecOf, objectiveOf } from "./settings.ts";

/** Everything a fine-tuning run holds on the GPU: a DDPM run's state plus the guidance classifier. */
export interface FinetuneRun extends DdpmRun {
  settings: FinetuneSettings;
  /** The frozen guidance classifier (addt, linf). */
  classifier: Classifier | null;
}

/** Resnets of a UNet: each draws one dropout site per pass. */
export function dropoutSites(cfg: UNetConfig): number {
  const levels = cfg.block_out_channels.length;
  return levels * cfg.layers_per_block + 2 + levels * (cfg.layers_per_block + 1);
}

/** Build a run with seeded weights: `startFrom` then loads the source's weights, or a checkpoint is
 * restored into it (pipeline.ts). */
export function createFinetuneRun(
  gpu: Gpu,
  settings: FinetuneSettings,
  unet: UNetConfig,
  train: Dataset,
  classifier: Classifier | null,
): FinetuneRun {
  const s = settings;
  if (dropoutSites(unet) > MAX_DROPOUT_SITES) {
    throw new TrainSetupError(`the UNet has more than ${MAX_DROPOUT_SITES} resnets: too many dropout sites`);
  }
  if (objectiveOf(s.method) === "classifier" && !classifier) {
    throw new TrainSetupError(`--method ${s.method} needs the guidance classifier`);
  }
  const run = createDdpmRun(gpu, s, unet, train, { stream: ADDT_STREAM, flip: flipOf(s) });
  return { ...run, settings: s, classifier };
}

/** Start from the source DDPM's (EMA) weights: the model and the EMA both take them. */
export function startFrom(run: FinetuneRun, weights: SafetensorsFile, source: string): void {
  loadParamsFrom(run.model, weights, source);
  run.ema.copyFrom(run.model);
}

/** Point the run's key at step `step` (after a restore): one upload, once. */
export function seekFinetuneRun(run: FinetuneRun, step: number): void {
  run.gpu.upload(run.key, keyWords(run.settings.seed, ADDT_STREAM, step));
}

/** The batch's guided noise d for the run's method (null for clean fine-tuning). */
function guidedNoise(run: FinetuneRun, t: Tensor, coefs: Tensor): Tensor | null {
  const s = run.settings, objective = objectiveOf(s.method);
  if (objective === null) return null;
  const g: Guidance = {
    gpu: run.gpu,
    model: run.model,
    config: run.config,
    x0: run.inputs.images,
    labels: run.inputs.labels,
    t,
    coefs,
    key: run.key,
    objective,
    classifier: run.classifier,
    dropout: s.guidanceDropout,
  };
  if (s.method !== "linf") return cgpo(g, s.cgpoSteps);
  // the budget in [0, 1] pixels is twice that in the diffusion model's [-1, 1] units; the step is half of it
  const eps = 2 * linfBudget(s);
  return linfPerturbation(g, s.cgpoSteps, eps, eps / 2);
}

/** The step's training loss [1] on the uploaded batch, its gradients accumulated into the model's. */
export function finetuneLoss(run: FinetuneRun): Tensor {
  const { gpu, key, schedule } = run;
  const x0 = run.inputs.images;
  const t = drawTimesteps(gpu, x0.shape[0], schedule.T, key, SITE_TIMESTEPS);
  const coefs = mixCoefficients(gpu, schedule, mixSpecOf(run.settings), t);
  const d = guidedNoise(run, t, coefs);
  const eps = normal(gpu, x0.shape, key, SITE_NOISE);
  const target = d ? mixNoise(gpu, eps, d, coefs) : eps;
  const xt = qSampleRaw(gpu, x0, t, target, schedule);
  const pred = unetForward(run.model, run.config, constant(xt), t, {
    train: true,
    rngKey: key,
    siteBase: SITE_DROPOUT,
  });
  const loss = mse(pred, constant(target));
  run.model.zeroGrad();
  backward(loss);
  return loss.value;
}

/** Record one fine-tuning step on `batch`: dispatches only, no readback, one upload. */
export function recordFinetuneStep(run: FinetuneRun, batch: Batch): void {
  run.inputs.upload(batch);
  const loss = finetuneLoss(run);
  run.optimizer.step();
  run.stats.record(loss, run.optimizer.lastGradNorm);
  run.emaUpdater.step();
  advanceCounter(run.gpu, run.key);
}

export function disposeFinetuneRun(run: FinetuneRun): void {
  disposeDdpmRun(run);
}
