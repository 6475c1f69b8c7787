/**
 * Classifier training: cross-entropy on [0, 1] images with AdamW or SGD (momentum), and test accuracy by
 * batched forwards without gradients, the correct predictions counted on the GPU (one readback in all).
 *
 * Dropout (Wide ResNets) draws from one Philox key (seed, CLASSIFIER_STREAM, counter = step), advanced on
 * the GPU after each step, so a resumed run draws what the uninterrupted run drew.
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, scope, scopeAsync, Tensor } from "../tensor.ts";
import { type Batch, Batcher } from "../data/batches.ts";
import { type Dataset, pixelTable } from "../data/dataset.ts";
import { advanceCounter, keyWords, rngKey } from "../ops/random.ts";
import { AdamW, SgdMomentum } from "../ops/optim.ts";
import { backward, constant, noGrad } from "../autodiff/var.ts";
import { crossEntropy } from "../autodiff/softmax.ts";
import { sum } from "../ops/reduce.ts";
import { addInPlace } from "../ops/map.ts";
import { correctFlags } from "../attack/losses.ts";
import type { ParamStore } from "../nn/params.ts";
import type { TrainState } from "./checkpoint.ts";
import { classifierForward, type ClassifierModel, createClassifier } from "./models.ts";
import type { ClassifierSettings } from "./settings.ts";
import { StepStats } from "./stats.ts";
import { BatchInputs } from "./inputs.ts";
import { CLASSIFIER_STREAM } from "./draws.ts";

export interface ClassifierRun {
  gpu: Gpu;
  settings: ClassifierSettings;
  model: ClassifierModel;
  store: ParamStore;
  optimizer: AdamW | SgdMomentum;
  batcher: Batcher;
  inputs: BatchInputs;
  key: Tensor;
  stats: StepStats;
  state: TrainState;
}

export function createClassifierRun(
  gpu: Gpu,
  settings: ClassifierSettings,
  model: ClassifierModel,
  train: Dataset,
): ClassifierRun {
  const s = settings;
  const store = createClassifier(gpu, model, s.seed);
  const schedule = { lr: s.lr, warmupSteps: s.warmup, maxGradNorm: s.gradClip ?? undefined };
  const optimizer = s.optimizer === "adamw"
    ? new AdamW(store, { ...schedule, betas: s.adamBetas, eps: s.adamEps, weightDecay: s.weightDecay })
    : new SgdMomentum(store, {
      ...schedule,
      momentum: s.momentum,
      nesterov: s.nesterov,
      weightDecay: s.weightDecay,
    });
  const batcher = new Batcher(train, { batchSize: s.batchSize, seed: s.seed, range: "unit", flip: s.flip });
  const state: TrainState = {
    kind: "classifier",
    model: store,
    ema: null,
    optimizer,
    emaUpdater: null,
    seed: s.seed,
    dataset: s.dataset,
    config: model,
  };
  return {
    gpu,
    settings,
    model,
    store,
    optimizer,
    batcher,
    inputs: new BatchInputs(gpu, [s.batchSize, train.c, train.h, train.w]),
    key: keep(rngKey(gpu, s.seed, CLASSIFIER_STREAM, 0)),
    stats: new StepStats(gpu),
    state,
  };
}

/** Point the run's key at step `step` (after a restore). */
export function seekClassifierRun(run: ClassifierRun, step: number): void {
  run.gpu.upload(run.key, keyWords(run.settings.seed, CLASSIFIER_STREAM, step));
}

/** Record one training step: dispatches only, no readback, one upload. */
export function recordClassifierStep(run: ClassifierRun, batch: Batch): void {
  run.inputs.upload(batch);
  run.store.zeroGrad();
  const logits = classifierForward(run.store, run.model, constant(run.inputs.images), {
    train: true,
    rngKey: run.key,
  });
  const loss = crossEntropy(logits, run.inputs.labels); // mean over the batch, as torch's cross_entropy
  backward(loss);
  run.optimizer.step();
  run.stats.record(loss.value, run.optimizer.lastGradNorm);
  advanceCounter(run.gpu, run.key);
}

export interface Accuracy {
  correct: number;
  n: number;
  accuracy: number;
}

/**
 * Top-1 accuracy on the first `limit` images of `data` (all by default), in batches of `batchSize` (the last
 * one padded, so every batch has the same shape and reuses the same kernels). The correct predictions are
 * counted on the GPU: one readback for the whole evaluation.
 */
export async function evaluateAccuracy(
  gpu: Gpu,
  store: ParamStore,
  model: ClassifierModel,
  data: Dataset,
  batchSize: number,
  limit = data.n,
): Promise<Accuracy> {
  const n = Math.min(limit, data.n);
  const bs = Math.min(batchSize, n);
  const per = data.c * data.h * data.w;
  const table = pixelTable("unit");
  const inputs = new BatchInputs(gpu, [bs, data.c, data.h, data.w]);
  const images = new Float32Array(bs * per), labels = new Uint32Array(bs);
  try {
    const correct = await scopeAsync(async () => {
      const count = gpu.zeros([1]);
      for (let start = 0; start < n; start += bs) {
        const rows = Math.min(bs, n - start);
        images.fill(0);
        labels.fill(0);
        for (let k = 0; k < rows * per; k++) images[k] = table[data.images[start * per + k]];
        labels.set(data.labels.subarray(start, start + rows));
        scope(() => {
          inputs.write(images, labels);
          const logits = noGrad(() =>
            classifierForward(store, model, constant(inputs.images), { train: false })
          );
          const flags = correctFlags(gpu, logits.value, inputs.labels);
          // padded rows are left out of the count
          const real = rows === bs
            ? flags
            : new Tensor(gpu, flags.buffer, [rows], "f32", flags.offset, false);
          addInPlace(gpu, count, sum(gpu, real));
        });
      }
      return (await gpu.read(count))[0];
    });
    return { correct, n, accuracy: correct / n };
  } finally {
    inputs.dispose();
  }
}

export function disposeClassifierRun(run: ClassifierRun): void {
  for (const d of [run.store, run.optimizer, run.inputs, run.stats]) d.dispose();
  run.key.dispose();
}
