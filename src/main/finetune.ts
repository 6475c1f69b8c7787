/**
 * Where the main job's ADDT model comes from: with --finetune-steps N > 0, an ADDT fine-tune of the
 * vanilla DDPM for N steps into <out>/addt (src/addt/pipeline.ts; continued when that folder already
 * holds the same run, so a rerun does not start over); otherwise the shipped ADDT run folder, with a
 * note saying so (the issue allows this where a fine-tune cannot fit in the job's time budget: one ADDT
 * step at batch 64 is ~6 UNet forward+backward passes per image, minutes per step on llvmpipe).
 */
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { finetuneDefaults, type FinetuneSettings } from "../addt/settings.ts";
import { type FlowOptions, runFinetune } from "../addt/pipeline.ts";
import { MANIFEST } from "../train/checkpoint.ts";
import type { MainConfig } from "./defaults.ts";
import { exists } from "../io/files.ts";

export type FinetuneOptions = FlowOptions;

export interface AddtWeights {
  /** The ADDT DDPM run folder to evaluate. */
  dir: string;
  notes: string[];
  /** Seconds spent fine-tuning (null: loaded). */
  seconds: number | null;
}

/**
 * The fine-tune's settings: the paper's defaults, this job's data, seed and models. One exception: the
 * warmup is at most a tenth of the run, so a short run reaches the paper's learning rate instead of
 * spending all its steps in the 500-step warmup of a full fine-tune.
 */
export function finetuneSettings(c: MainConfig, resume: boolean): FinetuneSettings {
  const steps = c.finetuneSteps;
  const base = finetuneDefaults(`${c.out}/addt`);
  return finetuneDefaults(`${c.out}/addt`, {
    dataset: c.dataset,
    dataDir: c.dataDir,
    ddpm: c.ddpm,
    classifier: c.classifier,
    steps,
    warmup: Math.min(base.warmup, Math.floor(steps / 10)),
    batchSize: c.finetuneBatchSize ?? base.batchSize,
    seed: c.seed,
    resume,
    // a short run still gets a loss curve and ends on a checkpoint
    logEvery: Math.max(1, Math.min(25, Math.floor(steps / 10))),
    checkpointEvery: Math.min(250, steps),
  });
}

/** Settings the main job chooses; on a rerun they must match the saved run (others are its own). */
const CHOSEN = [
  "dataset",
  "ddpm",
  "classifier",
  "seed",
  "steps",
  "warmup",
  "batchSize",
  "dataDir",
  "logEvery",
  "checkpointEvery",
];

export function finetuneStage(
  c: MainConfig,
  say: (line: string) => void,
  opts: FinetuneOptions = {},
): TE.TaskEither<Error, AddtWeights> {
  if (c.finetuneSteps === 0) {
    return pipe(
      TE.tryCatch(() => fineTuneMethod(c.addt), () => new Error("unreachable")),
      TE.map((method) => ({
        dir: c.addt,
        notes: [
          `Loaded the ${method === "addt" ? "shipped ADDT" : `"${method}" fine-tune`} weights (${c.addt}) ` +
          "instead of fine-tuning: an ADDT fine-tune does not fit in the default job's time budget on a " +
          "software adapter (--finetune-steps N fine-tunes the vanilla DDPM for N steps here).",
        ],
        seconds: null,
      })),
    );
  }
  const out = `${c.out}/addt`;
  const t0 = performance.now();
  return pipe(
    TE.tryCatch(() => exists(`${out}/${MANIFEST}`), (e) => e as Error),
    TE.chain((resume) => {
      const s = finetuneSettings(c, resume);
      say(`main: fine-tune ${c.ddpm} with ADDT for ${s.steps} steps (batch ${s.batchSize}) into ${out}...`);
      const write = (text: string) => Deno.stderr.writeSync(new TextEncoder().encode(text));
      return runFinetune(s, {
        explicit: new Set(CHOSEN),
        ...opts,
        progress: { tty: Deno.stderr.isTerminal(), write, ...opts.progress },
      });
    }),
    TE.map((r) => ({
      dir: out,
      notes: [
        `Fine-tuned ${c.ddpm} with ADDT for ${r.finalStep} steps into ${out} (from step ${r.startStep}; ` +
        `guidance classifier ${c.classifier}; the paper's settings except a warmup of at most a tenth of ` +
        "the run).",
      ],
      seconds: (performance.now() - t0) / 1000,
    })),
  );
}

/** The fine-tuning method recorded in a run folder's run.json ("addt" when it names none). */
async function fineTuneMethod(dir: string): Promise<string> {
  try {
    const run = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
    return typeof run?.settings?.method === "string" ? run.settings.method : "addt";
  } catch {
    return "addt"; // the loader reports a missing or broken run folder with its own message
  }
}
