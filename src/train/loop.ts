/**
 * The training loop shared by the classifier and DDPM runs. Each step records its dispatches inside a
 * tensor scope (so pooled buffers are reused in steady state) and never reads back; the loop reads the
 * GPU-side statistics only at log and checkpoint steps, and awaits the device every `syncEvery` steps so
 * Deno reclaims released memory. A non-finite loss or gradient norm at a reading, or non-finite weights
 * about to be saved, stops the run with TrainingDivergedError; the manifest still names the last good
 * checkpoint, since nothing is written after the failed check.
 */
import type { Gpu } from "../gpu/context.ts";
import { scope } from "../tensor.ts";
import type { Batch, Batcher } from "../data/batches.ts";
import {
  captureState,
  firstNonFinite,
  type Manifest,
  type TrainState,
  writeCheckpoint,
} from "./checkpoint.ts";
import { TrainingDivergedError } from "./errors.ts";
import type { JsonlLog, LogRecord, Progress } from "./progress.ts";
import { baseLrAt, type CommonSettings, effectiveLrAt } from "./settings.ts";
import type { StepStats } from "./stats.ts";

/** Test hooks: run after each step is recorded (e.g. to inject a fault). */
export interface TrainHooks {
  afterStep?(step: number): void;
}

export interface LoopSpec {
  gpu: Gpu;
  settings: CommonSettings;
  batcher: Batcher;
  startStep: number;
  totalSteps: number;
  state: TrainState;
  stats: StepStats;
  /** Record step `step` (0-based) on its batch: dispatches only, no readback. */
  recordStep(step: number, batch: Batch): void;
  /** The learning rate of the optimizer is set to baseLrAt(step) before each step. */
  setLearningRate(lr: number): void;
  /** Evaluation every `every` steps (0: never); its fields join that step's log record. */
  periodic?: { every: number; run(step: number): Promise<Record<string, number>> };
  progress: Progress;
  log: JsonlLog;
  /** The step of the latest complete checkpoint before this loop, if any. */
  lastCheckpoint: number | null;
  hooks?: TrainHooks;
}

export interface LoopResult {
  finalStep: number;
  stepsRun: number;
  lastLoss: number;
  /** Images per second over the steady part of the run (the first interval, which compiles kernels, is
   * left out when there are later ones). */
  imagesPerS: number;
  wallS: number;
  manifest: Manifest | null;
}

export async function runLoop(spec: LoopSpec): Promise<LoopResult> {
  try {
    return await loop(spec);
  } finally {
    spec.progress.done(); // end the bar's line, also before an error line
  }
}

async function loop(spec: LoopSpec): Promise<LoopResult> {
  const { gpu, settings: s, batcher, stats, state, progress, log } = spec;
  const bpe = batcher.batchesPerEpoch;
  const t0 = performance.now();
  let lastGood = spec.lastCheckpoint;
  let checkedAt = spec.startStep;
  let intervalStart = performance.now(), intervalSteps = 0;
  let rate = 0, lastLoss = NaN;
  const intervals: { images: number; ms: number }[] = [];
  let manifest: Manifest | null = null;
  let lr = NaN;

  for (let step = spec.startStep; step < spec.totalSteps; step++) {
    const base = baseLrAt(s, step, bpe);
    if (base !== lr) spec.setLearningRate(lr = base);
    const batch = batcher.atStep(step);
    scope(() => spec.recordStep(step, batch));
    spec.hooks?.afterStep?.(step);
    intervalSteps++;
    const done = step + 1;
    const isLog = done % s.logEvery === 0 || done === spec.totalSteps;
    const isCheckpoint = done % s.checkpointEvery === 0 || done === spec.totalSteps;
    const isEval = spec.periodic !== undefined && spec.periodic.every > 0 && done % spec.periodic.every === 0;
    if (!isLog && !isCheckpoint && !isEval) {
      if (done % s.syncEvery === 0) await gpu.sync();
      // until the first reading, estimate the rate from the host's clock
      progress.tick(
        done,
        rate || (intervalSteps * s.batchSize) / ((performance.now() - intervalStart) / 1000),
      );
      continue;
    }

    const reading = await stats.read();
    if (!Number.isFinite(reading.meanLoss) || !Number.isFinite(reading.meanGradNorm)) {
      const what = Number.isFinite(reading.meanLoss) ? "the gradient norm" : "the loss";
      throw new TrainingDivergedError(done, checkedAt, what, lastGood, s.out);
    }
    checkedAt = done;
    lastLoss = reading.meanLoss;
    const ms = performance.now() - intervalStart;
    rate = (intervalSteps * s.batchSize) / (ms / 1000);
    intervals.push({ images: intervalSteps * s.batchSize, ms });
    const record: LogRecord = {
      step: done,
      loss: reading.meanLoss,
      lr: effectiveLrAt(s, step, bpe),
      grad_norm: reading.meanGradNorm,
      images_per_s: rate,
      wall_s: (performance.now() - t0) / 1000,
    };
    if (isEval) Object.assign(record, await spec.periodic!.run(done));
    if (isLog || isEval) {
      progress.log(record);
      await log.append(record);
    }

    if (isCheckpoint) {
      const host = await captureState(state);
      const bad = firstNonFinite(host);
      if (bad) {
        throw new TrainingDivergedError(
          done,
          lastGood ?? spec.startStep,
          `parameter ${bad}`,
          lastGood,
          s.out,
        );
      }
      manifest = await writeCheckpoint(s.out, state, host, done, s.keep);
      lastGood = done;
    }
    // time spent reading, evaluating and writing is not training time
    intervalStart = performance.now();
    intervalSteps = 0;
  }
  const steady = intervals.length > 1 ? intervals.slice(1) : intervals;
  const images = steady.reduce((a, i) => a + i.images, 0), ms = steady.reduce((a, i) => a + i.ms, 0);
  return {
    finalStep: Math.max(spec.totalSteps, spec.startStep),
    stepsRun: Math.max(0, spec.totalSteps - spec.startStep),
    lastLoss,
    imagesPerS: ms > 0 ? images / (ms / 1000) : 0,
    wallS: (performance.now() - t0) / 1000,
    manifest,
  };
}
