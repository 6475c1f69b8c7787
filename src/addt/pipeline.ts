/**
 * `addt finetune` as an fp-ts pipeline: validated settings -> the source DDPM run (its schedule, UNet
 * config and EMA weights) -> the output folder (fresh, or resumed from its last checkpoint) -> data ->
 * GPU, guidance classifier and model -> the shared training loop (src/train/loop.ts: logging, checkpoints,
 * divergence stop) -> final weights and report.
 *
 * The output folder is a DDPM run folder: run.json holds the DDPM settings (dataset, schedule...) with the
 * method's settings, the source and classifier folders, and `model` = the UNet config; checkpoints,
 * manifest.json, train.jsonl, and model.safetensors / ema.safetensors at the end, exactly as train-ddpm
 * writes them, so `addt eval --ddpm <out>` and `addt sample` load it unchanged.
 */
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { getGpu, type Gpu } from "../gpu/context.ts";
import { attempt, exists } from "../io/files.ts";
import { readSafetensors, writeFileAtomic } from "../io/safetensors.ts";
import { loadParams } from "../nn/model_io.ts";
import { type UNetConfig, unetTrace } from "../nn/unet.ts";
import type { ParamStore } from "../nn/params.ts";
import { type Classifier, frozenClassifier } from "../defense/networks.ts";
import { linkFinal, readManifest, restoreCheckpoint, RUN_FILE } from "../train/checkpoint.ts";
import { TrainSetupError } from "../train/errors.ts";
import { runLoop } from "../train/loop.ts";
import { type ClassifierModel, createClassifier } from "../train/models.ts";
import { loadSplits } from "../train/data.ts";
import { JsonlLog, Progress } from "../train/progress.ts";
import { type OpenedRun, openRun } from "../train/run_dir.ts";
import { readRunJson } from "../train/run_folder.ts";
import { type FlowOptions, formatReport, type TrainReport } from "../train/pipeline.ts";
import { type ClassifierSettings, DATASET_SHAPES, type DdpmSettings } from "../train/settings.ts";
import {
  createFinetuneRun,
  disposeFinetuneRun,
  type FinetuneRun,
  recordFinetuneStep,
  seekFinetuneRun,
  startFrom,
} from "./finetune.ts";
import { type FinetuneMethod, type FinetuneSettings, needsClassifier, validateFinetune } from "./settings.ts";

export type { FlowOptions };

export interface FinetuneReport extends TrainReport {
  method: FinetuneMethod;
  /** The source DDPM run folder and the guidance classifier's folder. */
  source: string;
  classifier: string | null;
}

/** Where the fine-tuning came from, kept in run.json beside the settings. */
export interface FinetuneSource {
  ddpm: string;
  /** The source run's checkpoint step (its manifest), if it has one. */
  ddpmStep: number | null;
  classifier: string | null;
}

/** run.json of a run folder; `what` names the flag in the error line. */
function readRun(dir: string, what: string): Promise<Record<string, unknown>> {
  return readRunJson(dir, (f) => {
    const why = f.kind === "missing"
      ? "not found (not a training run folder)"
      : f.kind === "unreadable"
      ? f.message
      : `is unreadable (${f.message})`;
    return new TrainSetupError(`${what} ${dir}: ${f.path} ${why}`);
  });
}

interface DdpmSource {
  settings: DdpmSettings;
  model: UNetConfig;
  step: number | null;
  emaPath: string;
}

/** The source DDPM run: a train-ddpm (or finetune) folder with EMA weights. */
async function readDdpmSource(dir: string): Promise<DdpmSource> {
  const run = await readRun(dir, "--ddpm");
  const settings = run.settings as DdpmSettings, model = run.model as UNetConfig;
  if (settings.kind !== "ddpm") {
    throw new TrainSetupError(`--ddpm ${dir} holds a ${settings.kind} run, not a DDPM`);
  }
  try {
    unetTrace(model);
  } catch (e) {
    throw new TrainSetupError(`--ddpm ${dir}: its UNet config is invalid (${(e as Error).message})`);
  }
  const emaPath = `${dir}/ema.safetensors`;
  if (!await exists(emaPath)) {
    throw new TrainSetupError(`--ddpm ${dir}: no ema.safetensors (fine-tuning starts from the EMA weights)`);
  }
  const step = (await readManifest(dir).catch(() => null))?.step ?? null;
  return { settings, model, step, emaPath };
}

/** The settings of a fresh run: the source's schedule and (unless given) its dataset. */
function adoptSource(s: FinetuneSettings, src: DdpmSource, explicit: ReadonlySet<string>): FinetuneSettings {
  const dataset = src.settings.dataset;
  if (explicit.has("dataset") && s.dataset !== dataset) {
    throw new TrainSetupError(`the DDPM in ${s.ddpm} was trained on ${dataset}, not ${s.dataset}`);
  }
  const [c, h, w] = DATASET_SHAPES[dataset];
  const m = src.model;
  if (m.sample_size !== h || h !== w || m.in_channels !== c || m.out_channels !== c) {
    throw new TrainSetupError(`--ddpm ${s.ddpm}: its UNet is not for ${dataset}'s ${c}x${h}x${w} images`);
  }
  return {
    ...s,
    dataset,
    config: null,
    timesteps: src.settings.timesteps,
    betaStart: src.settings.betaStart,
    betaEnd: src.settings.betaEnd,
  };
}

/** The guidance classifier's run folder, checked: a classifier trained on `dataset`, with its weights. */
async function readGuide(dir: string, dataset: string): Promise<{ model: ClassifierModel; path: string }> {
  const run = await readRun(dir, "--classifier");
  const settings = run.settings as ClassifierSettings, model = run.model as ClassifierModel;
  if (settings.kind !== "classifier") {
    throw new TrainSetupError(`--classifier ${dir} holds a ${settings.kind} run, not a classifier`);
  }
  if (settings.dataset !== dataset) {
    throw new TrainSetupError(`the classifier in ${dir} was trained on ${settings.dataset}, not ${dataset}`);
  }
  const path = `${dir}/model.safetensors`;
  if (!await exists(path)) throw new TrainSetupError(`--classifier ${dir}: no model.safetensors`);
  return { model, path };
}

/** The frozen guidance classifier of a classifier run folder trained on `dataset`. */
async function loadGuide(gpu: Gpu, dir: string, dataset: string, stores: ParamStore[]): Promise<Classifier> {
  const { model, path } = await readGuide(dir, dataset);
  const store = createClassifier(gpu, model, 0);
  stores.push(store);
  await loadParams(store, path);
  return frozenClassifier(store, model);
}

interface Prepared {
  opened: OpenedRun<FinetuneSettings, UNetConfig>;
  /** The source's EMA weights file (fresh runs only). */
  emaPath: string | null;
}

/** Open the output folder: a fresh run from the source, or the resumption of a fine-tuning run. */
async function prepare(s: FinetuneSettings, explicit: ReadonlySet<string>): Promise<Prepared> {
  const keepsConfig = () => Promise.reject(new Error("unreachable: a resumed run keeps its model config"));
  if (await readManifest(s.out)) {
    // without --resume, openRun refuses to overwrite the run (one line naming --resume)
    if (!s.resume) await openRun<FinetuneSettings, UNetConfig>(s, explicit, keepsConfig);
    const saved = await readRun(s.out, "--out");
    const settings = saved.settings as Partial<FinetuneSettings>;
    if (typeof settings.method !== "string" || typeof settings.ddpm !== "string") {
      throw new TrainSetupError(
        `${s.out} holds a DDPM training run, not a fine-tuning run: cannot resume it here`,
      );
    }
    const opened = await openRun<FinetuneSettings, UNetConfig>(s, explicit, keepsConfig);
    await writeRunFile(opened, (saved.source as FinetuneSource | undefined) ?? null);
    return { opened, emaPath: null };
  }
  // check both source folders before anything is written to the output folder
  const src = await readDdpmSource(s.ddpm);
  const adopted = adoptSource(s, src, explicit);
  if (needsClassifier(s.method)) await readGuide(s.classifier!, adopted.dataset);
  const opened = await openRun<FinetuneSettings, UNetConfig>(
    adopted,
    explicit,
    () => Promise.resolve(src.model),
  );
  await writeRunFile(opened, { ddpm: s.ddpm, ddpmStep: src.step, classifier: s.classifier });
  return { opened, emaPath: src.emaPath };
}

/** run.json: the settings and UNet config (as train-ddpm writes them) and where the run came from. */
async function writeRunFile(opened: Prepared["opened"], source: FinetuneSource | null): Promise<void> {
  const file = { settings: opened.settings, model: opened.model, source };
  await writeFileAtomic(`${opened.settings.out}/${RUN_FILE}`, JSON.stringify(file, null, 2) + "\n");
}

/** The loop around a built run, with progress output and the JSON-lines log. */
async function train(run: FinetuneRun, p: Prepared, opts: FlowOptions): Promise<FinetuneReport> {
  const { opened } = p, s = opened.settings;
  const start = opened.manifest?.step ?? 0;
  if (opened.manifest) await restoreCheckpoint(s.out, opened.manifest, run.state);
  else startFrom(run, await readSafetensors(p.emaPath!), p.emaPath!);
  seekFinetuneRun(run, start);
  const progress = new Progress(`finetune ${s.method}`, start, s.steps, s.batchSize, opts.progress);
  if (opened.note) progress.note(opened.note);
  if (start > 0) progress.note(`resuming ${s.out} at step ${start} of ${s.steps}`);
  const loop = await runLoop({
    gpu: run.gpu,
    settings: s,
    batcher: run.batcher,
    startStep: start,
    totalSteps: s.steps,
    state: run.state,
    stats: run.stats,
    recordStep: (_, batch) => recordFinetuneStep(run, batch),
    setLearningRate: (lr) => run.optimizer.setLearningRate(lr),
    progress,
    log: new JsonlLog(`${s.out}/train.jsonl`),
    lastCheckpoint: opened.manifest?.step ?? null,
    hooks: opts.hooks,
  });
  const manifest = loop.manifest ?? opened.manifest;
  if (manifest) await linkFinal(s.out, manifest);
  return {
    kind: "ddpm",
    out: s.out,
    startStep: start,
    finalStep: loop.finalStep,
    loop,
    manifest,
    method: s.method,
    source: s.ddpm,
    classifier: s.classifier,
  };
}

/** Settings a run takes from its source DDPM, never from the caller: not compared on resume. */
const given = (key: string) => !["timesteps", "betaStart", "betaEnd", "config"].includes(key);

/** Fine-tune (or resume fine-tuning) a DDPM with ADDT or one of its ablations. Without `opts.explicit`, every
 * setting counts as given: a resumed run must agree with all of them (as train-ddpm's pipeline). */
export function runFinetune(
  input: FinetuneSettings,
  opts: FlowOptions = {},
): TE.TaskEither<Error, FinetuneReport> {
  const stores: ParamStore[] = [];
  return pipe(
    TE.fromEither(validateFinetune(input)),
    TE.chain((s) => attempt(() => prepare(s, opts.explicit ?? new Set(Object.keys(s).filter(given))))),
    TE.bindTo("prepared"),
    TE.bind("train", ({ prepared }) => {
      const s = prepared.opened.settings;
      return attempt(async () => (await loadSplits(s.dataset, s.dataDir, ["train"])).train!);
    }),
    TE.bind("gpu", () => attempt(getGpu)),
    TE.chain(({ prepared, train: data, gpu }) =>
      attempt(async () => {
        const s = prepared.opened.settings;
        const guide = needsClassifier(s.method)
          ? await loadGuide(gpu, s.classifier!, s.dataset, stores)
          : null;
        const run = createFinetuneRun(gpu, s, prepared.opened.model, data, guide);
        try {
          return await train(run, prepared, opts);
        } finally {
          disposeFinetuneRun(run);
        }
      })
    ),
    TE.bimap(
      (e) => (stores.forEach((st) => st.dispose()), e),
      (r) => (stores.forEach((st) => st.dispose()), r),
    ),
  );
}

/** The report as the CLI prints it. */
export function formatFinetuneReport(r: FinetuneReport): string {
  return formatReport(r).replace(/^ddpm:/, `finetune ${r.method}:`) + `\nfrom ${r.source}` +
    (r.classifier ? `, guided by ${r.classifier}` : "");
}

/** Whether a folder holds a fine-tuning run (run.json with the method's settings). */
export async function isFinetuneRun(dir: string): Promise<boolean> {
  try {
    const r = JSON.parse(await Deno.readTextFile(`${dir}/${RUN_FILE}`));
    return typeof r?.settings?.method === "string";
  } catch {
    return false;
  }
}
