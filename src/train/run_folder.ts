/**
 * Reading a training run folder, what train-ddpm, train-classifier and finetune write: run.json (the
 * settings and the model config) with the weights beside it. The commands that use a trained network (eval,
 * eval-clean, sample, finetune's sources, the main job) read it here; each keeps its own wording for a
 * missing or broken folder (see readRunJson's `fault`).
 */
import type { Gpu } from "../gpu/context.ts";
import { statOrNull } from "../io/files.ts";
import { loadParams } from "../nn/model_io.ts";
import type { ParamStore } from "../nn/params.ts";
import { createUNet, type UNetConfig } from "../nn/unet.ts";
import { type EpsModel, linearSchedule, type Schedule } from "../diffusion/sampler.ts";
import { type Classifier, frozenClassifier, frozenEpsModel } from "../defense/networks.ts";
import { EvalConfigError } from "../eval/config.ts";
import { RUN_FILE } from "./checkpoint.ts";
import { type ClassifierModel, createClassifier } from "./models.ts";
import type { ClassifierSettings, DatasetName, DdpmSettings } from "./settings.ts";

/** run.json as read: the settings, the model config, and whatever else the run recorded (a fine-tune's `source`). */
export interface RunJson {
  settings: Record<string, unknown>;
  model: unknown;
  [key: string]: unknown;
}

/** Why run.json could not be had. */
export interface RunJsonFault {
  /** "missing": no such file; "unreadable": any other read error; "invalid": not JSON, or no settings or model. */
  kind: "missing" | "unreadable" | "invalid";
  /** The path of run.json. */
  path: string;
  /** The underlying error's message. */
  message: string;
}

/** run.json of the run folder `dir`; a failure throws what `fault` makes of it (the caller's one-line error). */
export async function readRunJson(dir: string, fault: (f: RunJsonFault) => Error): Promise<RunJson> {
  const path = `${dir}/${RUN_FILE}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const kind = e instanceof Deno.errors.NotFound ? "missing" : "unreadable";
    throw fault({ kind, path, message: (e as Error).message });
  }
  try {
    const r = JSON.parse(text);
    if (!r?.settings || !r?.model) throw new Error("no settings or model");
    return r;
  } catch (e) {
    throw fault({ kind: "invalid", path, message: (e as Error).message });
  }
}

/** A weights file with what identifies its contents cheaply. */
export interface WeightsFile {
  path: string;
  bytes: number;
  modified: string | null;
}

async function weightsFile(path: string): Promise<WeightsFile | null> {
  const info = await statOrNull(path);
  return info?.isFile ? { path, bytes: info.size, modified: info.mtime?.toISOString() ?? null } : null;
}

/** What a loader checks beyond the folder itself. */
export interface RunExpectation {
  /** The dataset the network must have been trained on (an EvalConfigError names both otherwise). */
  dataset?: DatasetName;
  /** How errors name the folder (default "DDPM run" / "classifier run"). */
  what?: string;
}

/**
 * run.json of a training run folder, or one line naming the missing or broken folder or the wrong dataset
 * (eval, eval-clean and the main job); `what` is how errors name the folder.
 */
async function readRunFolder<S extends { dataset: DatasetName }, M>(
  dir: string,
  expect: RunExpectation,
  what: string,
): Promise<{ settings: S; model: M }> {
  const info = await statOrNull(dir);
  if (!info?.isDirectory) throw new EvalConfigError(`${what} ${dir}: no such folder`);
  const run = await readRunJson(dir, (f) => {
    const why = f.kind === "missing" ? "not found (not a training run folder?)" : f.message;
    return new EvalConfigError(`${what} ${f.path}: ${why}`);
  }) as unknown as { settings: S; model: M };
  const trained = run.settings.dataset;
  if (expect.dataset !== undefined && trained !== expect.dataset) {
    throw new EvalConfigError(`the ${what} in ${dir} was trained on ${trained}, not ${expect.dataset}`);
  }
  return run;
}

/** Load `path` into a fresh store; the store is released when the file does not fit it. */
async function loadOrDispose(store: ParamStore, path: string): Promise<void> {
  try {
    await loadParams(store, path);
  } catch (e) {
    store.dispose();
    throw e;
  }
}

/** A DDPM run folder's network, ready to denoise. */
export interface LoadedDdpmRun {
  eps: EpsModel;
  config: UNetConfig;
  settings: DdpmSettings;
  schedule: Schedule;
  store: ParamStore;
  weights: WeightsFile;
}

/** The DDPM of a run folder (EMA weights when asked for and present), frozen, in evaluation mode. */
export async function loadDdpmRun(
  gpu: Gpu,
  dir: string,
  ema: boolean,
  expect: RunExpectation = {},
): Promise<LoadedDdpmRun> {
  const what = expect.what ?? "DDPM run";
  const run = await readRunFolder<DdpmSettings, UNetConfig>(dir, expect, what);
  const file = (ema ? await weightsFile(`${dir}/ema.safetensors`) : null) ??
    await weightsFile(`${dir}/model.safetensors`);
  if (!file) {
    throw new EvalConfigError(`${what} ${dir}: no ${ema ? "ema.safetensors or " : ""}model.safetensors`);
  }
  const store = createUNet(gpu, run.model, 0);
  await loadOrDispose(store, file.path);
  const s = run.settings;
  return {
    eps: frozenEpsModel(store, run.model),
    config: run.model,
    settings: s,
    schedule: linearSchedule(s.timesteps, s.betaStart, s.betaEnd),
    store,
    weights: file,
  };
}

/** A classifier run folder's network, frozen. */
export interface LoadedClassifierRun {
  classifier: Classifier;
  model: ClassifierModel;
  settings: ClassifierSettings;
  store: ParamStore;
  weights: WeightsFile;
}

export async function loadClassifierRun(
  gpu: Gpu,
  dir: string,
  expect: RunExpectation = {},
): Promise<LoadedClassifierRun> {
  const what = expect.what ?? "classifier run";
  const run = await readRunFolder<ClassifierSettings, ClassifierModel>(dir, expect, what);
  const file = await weightsFile(`${dir}/model.safetensors`);
  if (!file) throw new EvalConfigError(`${what} ${dir}: no model.safetensors`);
  const store = createClassifier(gpu, run.model, 0);
  await loadOrDispose(store, file.path);
  return {
    classifier: frozenClassifier(store, run.model),
    model: run.model,
    settings: run.settings,
    store,
    weights: file,
  };
}
