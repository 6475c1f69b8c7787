/**
 * `addt eval` as an fp-ts pipeline: validated config -> trained networks from their run folders (the
 * model config in run.json, the weights beside it) -> the test images -> the evaluation -> report.json and
 * report.md. Each stage is a TaskEither; failures stay typed until the CLI turns them into one line.
 * With --out the evaluation saves progress.json there after every batch, and the same command run again
 * continues from it (src/eval/resume.ts).
 */
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { getGpu, type Gpu } from "../gpu/context.ts";
import { loadParams } from "../nn/model_io.ts";
import { createUNet, type UNetConfig } from "../nn/unet.ts";
import type { ParamStore } from "../nn/params.ts";
import { linearSchedule } from "../diffusion/schedule.ts";
import { type ClassifierModel, createClassifier } from "../train/models.ts";
import { loadSplits } from "../train/data.ts";
import type { ClassifierSettings, DdpmSettings } from "../train/settings.ts";
import { readRunFolder } from "../train/run_folder.ts";
import { toFloat } from "../data/dataset.ts";
import { frozenClassifier, frozenEpsModel } from "../defense/networks.ts";
import { DiffusionPurifier } from "../defense/purifier.ts";
import { type Defense, purified, undefended } from "../defense/defense.ts";
import { type EvalConfig, EvalConfigError, validateEvalConfig } from "./config.ts";
import { type EvalHooks, type EvalInputs, evaluate } from "./run.ts";
import { type EvalReport, reportMarkdown } from "./report.ts";
import { attempt, exists } from "../io/files.ts";
import { writeFileAtomic } from "../io/safetensors.ts";
import { evalProgressKey, weightsStamps } from "./resume.ts";

/** The classifier and (unless "none") the purifier, with their trained weights (files read: `weights`). */
async function loadDefense(
  gpu: Gpu,
  c: EvalConfig,
  stores: ParamStore[],
  weights: string[],
): Promise<Defense> {
  const cls = await readRunFolder<ClassifierSettings, ClassifierModel>(c.classifier, "classifier run");
  if (cls.settings.dataset !== c.dataset) {
    throw new EvalConfigError(
      `the classifier in ${c.classifier} was trained on ${cls.settings.dataset}, not ${c.dataset}`,
    );
  }
  const cStore = createClassifier(gpu, cls.model, 0);
  stores.push(cStore);
  const cPath = `${c.classifier}/model.safetensors`;
  weights.push(cPath);
  await loadParams(cStore, cPath);
  const classifier = frozenClassifier(cStore, cls.model);
  if (c.defense === "none") return undefended(classifier);
  const ddpm = await readRunFolder<DdpmSettings, UNetConfig>(c.ddpm!, "DDPM run");
  if (ddpm.settings.dataset !== c.dataset) {
    throw new EvalConfigError(
      `the DDPM in ${c.ddpm} was trained on ${ddpm.settings.dataset}, not ${c.dataset}`,
    );
  }
  const uStore = createUNet(gpu, ddpm.model, 0);
  stores.push(uStore);
  const emaPath = `${c.ddpm}/ema.safetensors`;
  const uPath = c.ema && await exists(emaPath) ? emaPath : `${c.ddpm}/model.safetensors`;
  weights.push(uPath);
  await loadParams(uStore, uPath);
  const s = ddpm.settings;
  const purifier = new DiffusionPurifier(frozenEpsModel(uStore, ddpm.model), {
    tStar: c.tStar,
    nfe: c.nfe,
    sampler: c.defense === "dp_ddpm" ? "ddpm" : "ddim",
    schedule: linearSchedule(s.timesteps, s.betaStart, s.betaEnd),
    checkpoint: c.checkpoint,
  });
  return purified(classifier, purifier, c.defense === "dp_ddpm" ? "DP_DDPM" : "DP_DDIM");
}

async function loadInputs(c: EvalConfig, stores: ParamStore[], weights: string[]): Promise<EvalInputs> {
  const gpu = await getGpu();
  const defense = await loadDefense(gpu, c, stores, weights);
  const { test } = await loadSplits(c.dataset, c.dataDir, ["test"]);
  const d = test!;
  const per = d.c * d.h * d.w, last = Math.min(d.n, c.offset + c.n);
  // only the images evaluated are converted; the report indexes them from 0
  const images = toFloat(d.images.subarray(c.offset * per, last * per), "unit");
  const labels = Uint32Array.from(d.labels.subarray(c.offset, last));
  if (last - c.offset < c.n) {
    throw new EvalConfigError(`${d.name} has ${d.n} images; asked for ${c.offset + c.n}`);
  }
  return { gpu, defense, images, labels, imageShape: [d.c, d.h, d.w] };
}

/** Write report.json and report.md into `out` (created if needed). */
export async function writeReport(report: EvalReport, out: string): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  await writeFileAtomic(`${out}/report.json`, JSON.stringify(report, null, 2) + "\n");
  await writeFileAtomic(`${out}/report.md`, reportMarkdown(report));
}

/** Resume through <out>/progress.json, keyed by the config (its real offset) and the weight files read. */
async function resumeHooks(c: EvalConfig, weights: readonly string[], hooks: EvalHooks): Promise<EvalHooks> {
  if (!c.out || hooks.resume) return hooks;
  const key = evalProgressKey(c, await weightsStamps(weights));
  return { ...hooks, resume: { path: `${c.out}/progress.json`, key } };
}

/** The whole evaluation from a config. */
export function runEvalPipeline(config: EvalConfig, hooks: EvalHooks = {}): TE.TaskEither<Error, EvalReport> {
  const stores: ParamStore[] = [];
  const weights: string[] = [];
  return pipe(
    TE.fromEither(validateEvalConfig(config)),
    TE.chainW((c) =>
      pipe(
        attempt(() => loadInputs(c, stores, weights)),
        // offset already applied by loadInputs
        TE.chain((inputs) =>
          attempt(async () => evaluate(inputs, { ...c, offset: 0 }, await resumeHooks(c, weights, hooks)))
        ),
        TE.map((report) => ({ ...report, config: c })),
        TE.chainFirst((report) => c.out ? attempt(() => writeReport(report, c.out!)) : TE.right(undefined)),
      )
    ),
    TE.mapLeft((e) => {
      for (const s of stores) s.dispose();
      return e;
    }),
    TE.map((r) => {
      for (const s of stores) s.dispose();
      return r;
    }),
  );
}
