/**
 * The networks of the main job from their training run folders (run.json with the settings and model
 * config, the weights beside it), loaded the way `addt eval` loads them (src/eval/pipeline.ts): the
 * classifier once, each DDPM once, and a Defense per (DDPM, defense kind) sharing those weights.
 * A missing or unreadable folder is an EvalConfigError naming it (one line, exit 2 in the CLI).
 */
import type { Gpu } from "../gpu/context.ts";
import type { UNetConfig } from "../nn/unet.ts";
import type { ParamStore } from "../nn/params.ts";
import type { Schedule } from "../diffusion/schedule.ts";
import type { EpsModel } from "../diffusion/sampler.ts";
import type { ClassifierModel } from "../train/models.ts";
import type { DatasetName } from "../train/settings.ts";
import {
  loadClassifierRun as loadClassifierFolder,
  loadDdpmRun as loadDdpmFolder,
} from "../train/run_folder.ts";
import type { Classifier } from "../defense/networks.ts";
import { DiffusionPurifier } from "../defense/purifier.ts";
import { type Defense, purified } from "../defense/defense.ts";
import type { MainDefense } from "./defaults.ts";

export interface LoadedClassifier {
  dir: string;
  model: ClassifierModel;
  store: ParamStore;
  classifier: Classifier;
}

/** The classifier of a run folder, checked to be trained on `dataset` (src/train/run_folder.ts). */
export async function loadClassifierRun(
  gpu: Gpu,
  dir: string,
  dataset: DatasetName,
): Promise<LoadedClassifier> {
  const run = await loadClassifierFolder(gpu, dir, { dataset });
  return { dir, model: run.model, store: run.store, classifier: run.classifier };
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
  const run = await loadDdpmFolder(gpu, dir, true, { dataset, what });
  const { config, schedule, store, eps } = run;
  return { dir, config, schedule, store, eps, weights: run.weights.path };
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
