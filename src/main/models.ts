/**
 * The networks of the main job from their training run folders (run.json with the settings and model
 * config, the weights beside it), loaded the way `addt eval` loads them (src/eval/pipeline.ts): the
 * classifier once, each DDPM once, and a Defense per (DDPM, defense kind) sharing those weights.
 * A missing or unreadable folder is an EvalConfigError naming it (one line, exit 2 in the CLI).
 */
import type { Gpu } from "../gpu/context.ts";
import { exists } from "../io/files.ts";
import { loadParams } from "../nn/model_io.ts";
import { createUNet, type UNetConfig } from "../nn/unet.ts";
import type { ParamStore } from "../nn/params.ts";
import { linearSchedule, type Schedule } from "../diffusion/schedule.ts";
import type { EpsModel } from "../diffusion/sampler.ts";
import { type ClassifierModel, createClassifier } from "../train/models.ts";
import type { DatasetName } from "../train/settings.ts";
import { readRunJson, type RunJson } from "../train/run_folder.ts";
import { type Classifier, frozenClassifier, frozenEpsModel } from "../defense/networks.ts";
import { DiffusionPurifier } from "../defense/purifier.ts";
import { type Defense, purified } from "../defense/defense.ts";
import { EvalConfigError } from "../eval/config.ts";
import type { MainDefense } from "./defaults.ts";

/** run.json of a run folder, or a one-line error saying which folder is missing or broken. */
export async function readRunFile(dir: string, what: string): Promise<RunJson> {
  if (!(await exists(dir))) throw new EvalConfigError(`${what} folder ${dir} not found`);
  return await readRunJson(dir, (f) => {
    const why = f.kind === "missing" ? "file not found" : f.message;
    return new EvalConfigError(`${what} ${f.path}: ${why}`);
  });
}

function checkDataset(run: RunJson, dir: string, what: string, dataset: DatasetName): void {
  const trained = run.settings.dataset;
  if (trained !== dataset) {
    throw new EvalConfigError(`the ${what} in ${dir} was trained on ${trained}, not ${dataset}`);
  }
}

export interface LoadedClassifier {
  dir: string;
  model: ClassifierModel;
  store: ParamStore;
  classifier: Classifier;
}

export async function loadClassifierRun(
  gpu: Gpu,
  dir: string,
  dataset: DatasetName,
): Promise<LoadedClassifier> {
  const run = await readRunFile(dir, "classifier run");
  checkDataset(run, dir, "classifier", dataset);
  const model = run.model as ClassifierModel;
  const store = createClassifier(gpu, model, 0);
  try {
    await loadParams(store, `${dir}/model.safetensors`);
  } catch (e) {
    store.dispose();
    throw e;
  }
  return { dir, model, store, classifier: frozenClassifier(store, model) };
}

export interface LoadedDdpm {
  dir: string;
  config: UNetConfig;
  schedule: Schedule;
  store: ParamStore;
  eps: EpsModel;
  /** The weights file used (EMA when the folder has it). */
  weights: string;
}

/** A DDPM run folder: EMA weights when present (as `addt eval` does by default), else the raw ones. */
export async function loadDdpmRun(
  gpu: Gpu,
  dir: string,
  dataset: DatasetName,
  what = "DDPM run",
): Promise<LoadedDdpm> {
  const run = await readRunFile(dir, what);
  checkDataset(run, dir, what, dataset);
  const config = run.model as UNetConfig;
  const s = run.settings;
  const num = (v: unknown, fallback: number) => (typeof v === "number" ? v : fallback);
  // the schedule of the run (the linear T = 1000 one when a fine-tune's settings do not repeat it)
  const schedule = linearSchedule(num(s.timesteps, 1000), num(s.betaStart, 1e-4), num(s.betaEnd, 0.02));
  const ema = `${dir}/ema.safetensors`;
  const weights = await exists(ema) ? ema : `${dir}/model.safetensors`;
  const store = createUNet(gpu, config, 0);
  try {
    await loadParams(store, weights);
  } catch (e) {
    store.dispose();
    throw e;
  }
  return { dir, config, schedule, store, eps: frozenEpsModel(store, config), weights };
}

export const DEFENSE_NAMES: Record<MainDefense, string> = { dp_ddpm: "DP_DDPM", dp_ddim: "DP_DDIM" };

/** The classifier behind a purifier made of `ddpm` (DP_DDPM: ancestral fixed_large; DP_DDIM: eta 0). */
export function buildDefense(
  classifier: Classifier,
  ddpm: LoadedDdpm,
  kind: MainDefense,
  tStar: number,
  nfe: number,
): Defense {
  const purifier = new DiffusionPurifier(ddpm.eps, {
    tStar,
    nfe,
    sampler: kind === "dp_ddpm" ? "ddpm" : "ddim",
    schedule: ddpm.schedule,
  });
  return purified(classifier, purifier, DEFENSE_NAMES[kind]);
}
