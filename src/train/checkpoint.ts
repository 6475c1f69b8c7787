/**
 * Training checkpoints, laid out in the run's output folder as
 *
 *   <out>/run.json                                 the run's settings (written once, at the start)
 *   <out>/train.jsonl                              one JSON line per logged step (progress.ts)
 *   <out>/checkpoints/step-<8 digits>/model.safetensors      weights, by parameter name
 *   <out>/checkpoints/step-<8 digits>/ema.safetensors        EMA weights (DDPM runs)
 *   <out>/checkpoints/step-<8 digits>/optimizer.safetensors  optimizer slots as flat tensors
 *                                                             ("optimizer.m", "optimizer.v" or
 *                                                             "optimizer.momentum"), step counters in the
 *                                                             metadata
 *   <out>/manifest.json                            names the latest complete checkpoint
 *   <out>/model.safetensors, <out>/ema.safetensors the final weights (hard links into the last checkpoint)
 *
 * Every file's header metadata holds: format, kind, step (completed steps), seed (the data and RNG seed),
 * dataset and config (the model config as JSON). Each file is written atomically (temporary file, then
 * rename) and the manifest is written last, also atomically, so a kill at any moment leaves the manifest
 * naming a complete checkpoint: that is the resume point. Older checkpoints are pruned only after the
 * manifest names a newer one.
 */
import { readSafetensors, type SafeTensor, writeFileAtomic, writeSafetensors } from "../io/safetensors.ts";
import type { ParamStore } from "../nn/params.ts";
import { loadParamsFrom } from "../nn/model_io.ts";
import type { AdamW, Ema, OptimizerState, SgdMomentum } from "../ops/optim.ts";
import { TrainSetupError } from "./errors.ts";

export const FORMAT = "addt-train/1";
export const MANIFEST = "manifest.json";
export const RUN_FILE = "run.json";

export type RunKind = "ddpm" | "classifier";

export interface Manifest {
  format: string;
  kind: RunKind;
  /** Completed training steps. */
  step: number;
  /** The checkpoint folder, relative to the output folder. */
  dir: string;
  files: { model: string; ema: string | null; optimizer: string };
  seed: number;
  dataset: string;
  written: string;
}

/** What a checkpoint saves: the GPU state of a run. */
export interface TrainState {
  kind: RunKind;
  model: ParamStore;
  ema: ParamStore | null;
  optimizer: AdamW | SgdMomentum;
  emaUpdater: Ema | null;
  seed: number;
  dataset: string;
  config: unknown;
}

/** The state on the host, read back from the GPU. */
export interface HostState {
  model: Map<string, Float32Array>;
  ema: Map<string, Float32Array> | null;
  optimizer: OptimizerState;
  emaStep: number;
}

export const checkpointDir = (step: number): string => `checkpoints/step-${String(step).padStart(8, "0")}`;

/** Read the whole state back (a few readbacks: only at checkpoints). */
export async function captureState(s: TrainState): Promise<HostState> {
  return {
    model: await s.model.toHost(),
    ema: s.ema ? await s.ema.toHost() : null,
    optimizer: await s.optimizer.saveState(),
    emaStep: s.emaUpdater ? await s.emaUpdater.readStep() : 0,
  };
}

/** The first parameter (or optimizer slot) holding a NaN or an infinity, or null. */
export function firstNonFinite(h: HostState): string | null {
  const scan = (prefix: string, entries: Iterable<[string, Float32Array]>) => {
    for (const [name, data] of entries) {
      for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return `${prefix}${name}`;
    }
    return null;
  };
  return scan("", h.model) ?? (h.ema ? scan("ema ", h.ema) : null) ??
    scan("optimizer ", Object.entries(h.optimizer.slots));
}

function metadataOf(s: TrainState, step: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    format: FORMAT,
    kind: s.kind,
    step: String(step),
    seed: String(s.seed),
    dataset: s.dataset,
    config: JSON.stringify(s.config),
    ...extra,
  };
}

/** A layout signature: optimizer slots only make sense for the same parameter layout. */
const layoutOf = (store: ParamStore) =>
  `${store.total}:` + store.slots.map((p) => `${p.name}@${p.offset}[${p.shape}]`).join(",");

function entries(store: ParamStore, values: Map<string, Float32Array>): [string, SafeTensor][] {
  return store.slots.map((p) => [p.name, { shape: [...p.shape], data: values.get(p.name)! }]);
}

/** Write a complete checkpoint for `step`, then the manifest naming it, then prune older ones. */
export async function writeCheckpoint(
  out: string,
  s: TrainState,
  h: HostState,
  step: number,
  keepCount: number,
): Promise<Manifest> {
  const dir = checkpointDir(step);
  await Deno.mkdir(`${out}/${dir}`, { recursive: true });
  const files = {
    model: `${dir}/model.safetensors`,
    ema: h.ema ? `${dir}/ema.safetensors` : null,
    optimizer: `${dir}/optimizer.safetensors`,
  };
  await writeSafetensors(`${out}/${files.model}`, entries(s.model, h.model), metadataOf(s, step));
  if (h.ema && s.ema) {
    await writeSafetensors(
      `${out}/${files.ema!}`,
      entries(s.ema, h.ema),
      metadataOf(s, step, { ema_step: String(h.emaStep) }),
    );
  }
  const slots: [string, SafeTensor][] = Object.entries(h.optimizer.slots).map((
    [name, data],
  ) => [`optimizer.${name}`, { shape: [data.length], data }]);
  await writeSafetensors(
    `${out}/${files.optimizer}`,
    slots,
    metadataOf(s, step, {
      optimizer: s.optimizer.constructor.name,
      optimizer_step: String(h.optimizer.step),
      ema_step: String(h.emaStep),
      layout: layoutOf(s.model),
    }),
  );
  const manifest: Manifest = {
    format: FORMAT,
    kind: s.kind,
    step,
    dir,
    files,
    seed: s.seed,
    dataset: s.dataset,
    written: new Date().toISOString(),
  };
  await writeFileAtomic(`${out}/${MANIFEST}`, JSON.stringify(manifest, null, 2) + "\n");
  await prune(out, step, keepCount);
  return manifest;
}

/** Delete checkpoint folders other than the newest `keepCount` at or below `latest` (and stale newer ones
 * from a killed run, which the manifest never named). */
async function prune(out: string, latest: number, keepCount: number): Promise<void> {
  const steps: number[] = [];
  try {
    for await (const e of Deno.readDir(`${out}/checkpoints`)) {
      const m = e.isDirectory ? /^step-(\d+)$/.exec(e.name) : null;
      if (m) steps.push(Number(m[1]));
    }
  } catch {
    return;
  }
  const kept = new Set(steps.filter((s) => s <= latest).sort((a, b) => b - a).slice(0, keepCount));
  for (const s of steps) {
    if (!kept.has(s)) await Deno.remove(`${out}/${checkpointDir(s)}`, { recursive: true }).catch(() => {});
  }
}

/** The manifest of the latest complete checkpoint in `out`, or null when there is none. */
export async function readManifest(out: string): Promise<Manifest | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${out}/${MANIFEST}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new TrainSetupError(`${out}/${MANIFEST}: ${(e as Error).message}`);
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (m.format !== FORMAT || !Number.isInteger(m.step)) throw new Error(`not an ${FORMAT} manifest`);
    return m;
  } catch (e) {
    throw new TrainSetupError(`${out}/${MANIFEST}: ${(e as Error).message}`);
  }
}

/** Load the checkpoint a manifest names into a run's GPU state (weights, EMA, optimizer, counters). */
export async function restoreCheckpoint(out: string, m: Manifest, s: TrainState): Promise<void> {
  const model = await readSafetensors(`${out}/${m.files.model}`);
  loadParamsFrom(s.model, model, `${out}/${m.files.model}`);
  if (s.ema) {
    if (!m.files.ema) throw new TrainSetupError(`${out}/${MANIFEST}: the checkpoint has no EMA weights`);
    loadParamsFrom(s.ema, await readSafetensors(`${out}/${m.files.ema}`), `${out}/${m.files.ema}`);
  }
  const path = `${out}/${m.files.optimizer}`;
  const opt = await readSafetensors(path);
  const meta = opt.metadata;
  if (meta.layout !== layoutOf(s.model)) {
    throw new TrainSetupError(`${path}: the optimizer state was saved for another parameter layout`);
  }
  if (meta.optimizer !== s.optimizer.constructor.name) {
    throw new TrainSetupError(
      `${path}: saved by ${meta.optimizer}, but the run uses ${s.optimizer.constructor.name}`,
    );
  }
  const slots: Record<string, Float32Array> = {};
  for (const [name, t] of opt.tensors) slots[name.replace(/^optimizer\./, "")] = t.data;
  s.optimizer.loadState({ step: Number(meta.optimizer_step), slots });
  s.emaUpdater?.loadStep(Number(meta.ema_step));
}

/** Expose the final weights as <out>/model.safetensors (and ema.safetensors): hard links, else copies. */
export async function linkFinal(out: string, m: Manifest): Promise<void> {
  const pairs: [string, string][] = [[m.files.model, "model.safetensors"]];
  if (m.files.ema) pairs.push([m.files.ema, "ema.safetensors"]);
  for (const [from, to] of pairs) {
    const tmp = `${out}/${to}.${Deno.pid}.tmp`;
    await Deno.remove(tmp).catch(() => {});
    await Deno.link(`${out}/${from}`, tmp).catch(() => Deno.copyFile(`${out}/${from}`, tmp));
    await Deno.rename(tmp, `${out}/${to}`);
  }
}
