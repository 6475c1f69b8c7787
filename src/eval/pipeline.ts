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
import type { ParamStore } from "../nn/params.ts";
import { loadSplits } from "../train/data.ts";
import { loadClassifierRun, loadDdpmRun } from "../train/run_folder.ts";
import { toFloat } from "../data/dataset.ts";
import { DiffusionPurifier } from "../defense/purifier.ts";
import { type Defense, purified, undefended } from "../defense/defense.ts";
import { type EvalConfig, EvalConfigError, validateEvalConfig } from "./config.ts";
import { type EvalHooks, type EvalInputs, evaluate } from "./run.ts";
import { type EvalReport, reportMarkdown } from "./report.ts";
import { attempt } from "../io/files.ts";
import { writeFileAtomic } from "../io/safetensors.ts";
import { evalProgressKey, weightsStamps } from "./resume.ts";

/** The classifier and (unless "none") the purifier, with their trained weights (files read: `weights`). */
async function loadDefense(
  gpu: Gpu,
  c: EvalConfig,
  stores: ParamStore[],
  weights: string[],
): Promise<Defense> {
  const cls = await loadClassifierRun(gpu, c.classifier, { dataset: c.dataset });
  stores.push(cls.store);
  weights.push(cls.weights.path);
  if (c.defense === "none") return undefended(cls.classifier);
  const ddpm = await loadDdpmRun(gpu, c.ddpm!, c.ema, { dataset: c.dataset });
  stores.push(ddpm.store);
  weights.push(ddpm.weights.path);
  const purifier = new DiffusionPurifier(ddpm.eps, {
    tStar: c.tStar,
    nfe: c.nfe,
    sampler: c.defense === "dp_ddpm" ? "ddpm" : "ddim",
    schedule: ddpm.schedule,
    checkpoint: c.checkpoint,
  });
  return purified(cls.classifier, purifier, c.defense === "dp_ddpm" ? "DP_DDPM" : "DP_DDIM");
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
