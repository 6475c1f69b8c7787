/**
 * The output folder of a run: starting a fresh run there, or resuming the one it holds. run.json keeps the
 * settings and the resolved model config, so a resumed run rebuilds exactly the same model even if a
 * config file changed since, and refuses settings that would change what it computes.
 */
import * as E from "fp-ts/Either.js";
import { writeFileAtomic } from "../io/safetensors.ts";
import { type Manifest, readManifest, RUN_FILE } from "./checkpoint.ts";
import { TrainSetupError } from "./errors.ts";
import { resumeSettings, type TrainSettings } from "./settings.ts";

export interface RunFile<S extends TrainSettings, M> {
  settings: S;
  model: M;
}

export interface OpenedRun<S extends TrainSettings, M> {
  settings: S;
  /** The resolved model config: the saved one when resuming. */
  model: M;
  /** The checkpoint to resume from (null: start at step 0). */
  manifest: Manifest | null;
  /** A remark for the user (e.g. --resume found nothing to resume). */
  note: string | null;
}

async function readRunFile<S extends TrainSettings, M>(out: string): Promise<RunFile<S, M>> {
  const path = `${out}/${RUN_FILE}`;
  try {
    const r = JSON.parse(await Deno.readTextFile(path)) as RunFile<S, M>;
    if (!r.settings || !r.model) throw new Error("missing settings or model");
    return r;
  } catch (e) {
    throw new TrainSetupError(
      `${path}: cannot resume, the run's settings are unreadable (${(e as Error).message})`,
    );
  }
}

/**
 * Prepare `settings.out` for a run: refuse to overwrite a run without --resume; with --resume, continue
 * from the latest checkpoint with the saved settings (see resumeSettings). Writes run.json.
 * `resolveModel` gives the model config of a fresh run (not called when resuming).
 */
export async function openRun<S extends TrainSettings, M>(
  settings: S,
  explicit: ReadonlySet<string>,
  resolveModel: (s: S) => Promise<M>,
): Promise<OpenedRun<S, M>> {
  const out = settings.out;
  const manifest = await readManifest(out);
  let opened: OpenedRun<S, M>;
  if (manifest && !settings.resume) {
    throw new TrainSetupError(
      `${out} already holds a run (checkpoint at step ${manifest.step}); pass --resume to continue it or choose ` +
        "another --out",
    );
  }
  if (manifest) {
    const saved = await readRunFile<S, M>(out);
    const merged = resumeSettings(saved.settings, settings, explicit);
    if (E.isLeft(merged)) throw merged.left;
    if (manifest.kind !== merged.right.kind) {
      throw new TrainSetupError(`${out} holds a ${manifest.kind} checkpoint, not a ${merged.right.kind} one`);
    }
    opened = { settings: { ...merged.right, resume: true }, model: saved.model, manifest, note: null };
  } else {
    const note = settings.resume ? `no checkpoint in ${out} yet: starting at step 0` : null;
    opened = { settings, model: await resolveModel(settings), manifest: null, note };
  }
  await Deno.mkdir(out, { recursive: true });
  const file: RunFile<S, M> = { settings: opened.settings, model: opened.model };
  await writeFileAtomic(`${out}/${RUN_FILE}`, JSON.stringify(file, null, 2) + "\n");
  return opened;
}
