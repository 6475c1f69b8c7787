/**
 * The two training commands as fp-ts pipelines: validated settings -> output folder (fresh or resumed)
 * with the model config -> data -> GPU and model (restored from the checkpoint when resuming) -> training
 * loop -> final weights and report. Each stage is a TaskEither; the GPU loop inside stays plain effectful
 * code (loop.ts). Failures stay typed (Left) until the CLI turns them into one line.
 */
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { getGpu } from "../gpu/context.ts";
import type { Dataset } from "../data/dataset.ts";
import type { Batch } from "../data/batches.ts";
import { attempt } from "../io/files.ts";
import type { UNetConfig } from "../nn/unet.ts";
import { linkFinal, type Manifest, restoreCheckpoint } from "./checkpoint.ts";
import {
  type ClassifierRun,
  createClassifierRun,
  disposeClassifierRun,
  evaluateAccuracy,
  recordClassifierStep,
  seekClassifierRun,
} from "./classifier.ts";
import { loadSplits } from "./data.ts";
import { createDdpmRun, type DdpmRun, disposeDdpmRun, recordDdpmStep, seekDdpmRun } from "./ddpm.ts";
import { type LoopResult, runLoop, type TrainHooks } from "./loop.ts";
import { type ClassifierModel, resolveClassifier, resolveUnet } from "./models.ts";
import { JsonlLog, Progress, type ProgressOptions } from "./progress.ts";
import { type OpenedRun, openRun } from "./run_dir.ts";
import {
  type ClassifierSettings,
  type CommonSettings,
  type DdpmSettings,
  totalSteps,
  type TrainSettings,
  validateSettings,
} from "./settings.ts";

export interface FlowOptions {
  /** Settings given explicitly (the CLI's flags): on resume they must match the saved run. Default: all. */
  explicit?: ReadonlySet<string>;
  progress?: ProgressOptions;
  hooks?: TrainHooks;
}

export interface TrainReport {
  kind: "ddpm" | "classifier";
  out: string;
  startStep: number;
  finalStep: number;
  loop: LoopResult;
  /** The checkpoint naming the final weights. */
  manifest: Manifest | null;
  /** Classifier runs: top-1 accuracy on the whole test split. */
  testAccuracy?: number;
}

const allKeys = (s: object): ReadonlySet<string> => new Set(Object.keys(s));

/** The loop around a built run, with progress output and the JSON-lines log. */
function loopOver(
  label: string,
  opened: OpenedRun<DdpmSettings | ClassifierSettings, unknown>,
  run: DdpmRun | ClassifierRun,
  record: (step: number, batch: Batch) => void,
  opts: FlowOptions,
  periodic?: { every: number; run(step: number): Promise<Record<string, number>> },
): Promise<LoopResult> {
  const s: CommonSettings = opened.settings;
  const start = opened.manifest?.step ?? 0;
  const total = totalSteps(s, run.batcher.batchesPerEpoch);
  const progress = new Progress(label, start, total, s.batchSize, opts.progress);
  if (opened.note) progress.note(opened.note);
  if (start > 0) progress.note(`resuming ${s.out} at step ${start} of ${total}`);
  return runLoop({
    gpu: run.gpu,
    settings: s,
    batcher: run.batcher,
    startStep: start,
    totalSteps: total,
    state: run.state,
    stats: run.stats,
    recordStep: record,
    setLearningRate: (lr) => run.optimizer.setLearningRate(lr),
    periodic,
    progress,
    log: new JsonlLog(`${s.out}/train.jsonl`),
    lastCheckpoint: opened.manifest?.step ?? null,
    hooks: opts.hooks,
  });
}

/** Restore the checkpoint (if any) and point the RNG key at the start step. */
async function restore(
  out: string,
  manifest: Manifest | null,
  run: DdpmRun | ClassifierRun,
  seek: (step: number) => void,
): Promise<void> {
  if (manifest) await restoreCheckpoint(out, manifest, run.state);
  seek(manifest?.step ?? 0);
}

/** Train (or resume training) a DDPM. */
export function trainDdpm(input: DdpmSettings, opts: FlowOptions = {}): TE.TaskEither<Error, TrainReport> {
  return pipe(
    TE.fromEither(validateSettings(input)),
    TE.chain((s) =>
      attempt(() =>
        openRun<DdpmSettings, UNetConfig>(
          s,
          opts.explicit ?? allKeys(s),
          (v) => resolveUnet(v.config, v.dataset),
        )
      )
    ),
    TE.bindTo("opened"),
    TE.bind("train", ({ opened }) => attempt(() => trainSplit(opened.settings))),
    TE.bind("gpu", () => attempt(getGpu)),
    TE.chain(({ opened, train, gpu }) =>
      attempt(async () => {
        const s = opened.settings;
        const run = createDdpmRun(gpu, s, opened.model, train);
        try {
          await restore(s.out, opened.manifest, run, (step) => seekDdpmRun(run, step));
          const loop = await loopOver("ddpm", opened, run, (_, b) => recordDdpmStep(run, b), opts);
          const manifest = loop.manifest ?? opened.manifest;
          if (manifest) await linkFinal(s.out, manifest);
          return report("ddpm", opened, loop, manifest);
        } finally {
          disposeDdpmRun(run);
        }
      })
    ),
  );
}

/** Train (or resume training) a classifier, then measure its test accuracy. */
export function trainClassifier(
  input: ClassifierSettings,
  opts: FlowOptions = {},
): TE.TaskEither<Error, TrainReport> {
  return pipe(
    TE.fromEither(validateSettings(input)),
    TE.chain((s) =>
      attempt(() =>
        openRun<ClassifierSettings, ClassifierModel>(
          s,
          opts.explicit ?? allKeys(s),
          (v) => resolveClassifier(v.config, v.dataset),
        )
      )
    ),
    TE.bindTo("opened"),
    TE.bind(
      "splits",
      ({ opened }) =>
        attempt(() => loadSplits(opened.settings.dataset, opened.settings.dataDir, ["train", "test"])),
    ),
    TE.bind("gpu", () => attempt(getGpu)),
    TE.chain(({ opened, splits, gpu }) =>
      attempt(async () => {
        const s = opened.settings;
        const test = splits.test!;
        const run = createClassifierRun(gpu, s, opened.model, splits.train!);
        const accuracy = (limit?: number) =>
          evaluateAccuracy(gpu, run.store, run.model, test, s.evalBatchSize, limit);
        try {
          await restore(s.out, opened.manifest, run, (step) => seekClassifierRun(run, step));
          const periodic = {
            every: s.evalEvery,
            run: async () => ({ test_accuracy: (await accuracy(s.evalLimit)).accuracy }),
          };
          const loop = await loopOver(
            "classifier",
            opened,
            run,
            (_, b) => recordClassifierStep(run, b),
            opts,
            periodic,
          );
          const manifest = loop.manifest ?? opened.manifest;
          if (manifest) await linkFinal(s.out, manifest);
          const acc = await accuracy();
          await new JsonlLog(`${s.out}/train.jsonl`).append({
            step: loop.finalStep,
            test_accuracy: acc.accuracy,
            test_images: acc.n,
          });
          return { ...report("classifier", opened, loop, manifest), testAccuracy: acc.accuracy };
        } finally {
          disposeClassifierRun(run);
        }
      })
    ),
  );
}

async function trainSplit(s: CommonSettings): Promise<Dataset> {
  return (await loadSplits(s.dataset, s.dataDir, ["train"])).train!;
}

function report(
  kind: TrainReport["kind"],
  opened: OpenedRun<TrainSettings, unknown>,
  loop: LoopResult,
  manifest: Manifest | null,
): TrainReport {
  return {
    kind,
    out: opened.settings.out,
    startStep: opened.manifest?.step ?? 0,
    finalStep: loop.finalStep,
    loop,
    manifest,
  };
}

/** The report as the CLI prints it. */
export function formatReport(r: TrainReport): string {
  const l = r.loop;
  const lines = [
    `${r.kind}: steps ${r.startStep}..${r.finalStep} (${l.stepsRun} run) in ${l.wallS.toFixed(1)} s, ` +
    `${l.imagesPerS.toFixed(1)} images/s, final loss ${
      Number.isFinite(l.lastLoss) ? l.lastLoss.toFixed(5) : "-"
    }`,
  ];
  if (r.testAccuracy !== undefined) lines.push(`test accuracy ${(100 * r.testAccuracy).toFixed(2)}%`);
  if (r.manifest) {
    const ema = r.manifest.files.ema ? `, EMA ${r.out}/ema.safetensors` : "";
    lines.push(`weights ${r.out}/model.safetensors${ema} (checkpoint ${r.out}/${r.manifest.dir})`);
  }
  return lines.join("\n");
}
