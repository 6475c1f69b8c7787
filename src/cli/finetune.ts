/**
 * `addt finetune`: fine-tune a DDPM run with ADDT (or an ablation): flags -> validated settings -> the
 * pipeline of src/addt/pipeline.ts -> one report, or one error line and a non-zero exit code.
 *
 * As for train-ddpm, flags carry no commander defaults: the defaults live in src/addt/settings.ts (shown in
 * --help), and the flags actually given are the "explicit" settings that a resumed run must agree with.
 */
import type { Command } from "@commander-js/extra-typings";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { exitCodeOf } from "./errors.ts";
import { CHECKPOINT_FLAGS, EMA_FLAGS, OPTIMIZER_FLAGS, settingsFromFlags } from "./train.ts";
import { type Flag, integer, number, oneOf, text, withDefaults } from "./flags.ts";
import { DATASETS } from "../train/settings.ts";
import { finetuneDefaults, METHODS } from "../addt/settings.ts";
import { formatFinetuneReport, runFinetune } from "../addt/pipeline.ts";

const FLAGS: Flag[] = [
  { flag: "--ddpm <dir>", help: "the DDPM run folder to fine-tune (its EMA weights; required)", parse: text },
  {
    flag: "--classifier <dir>",
    help: "the guidance classifier's run folder (required by addt and linf)",
    parse: text,
  },
  {
    flag: "--out <dir>",
    help: "output folder: a DDPM run folder `addt eval --ddpm` loads (required)",
    parse: text,
  },
  { flag: "--method <name>", help: METHODS.join(" | "), parse: oneOf(METHODS) },
  { flag: "--dataset <name>", help: `${DATASETS.join(" | ")} (default: the DDPM's)`, parse: oneOf(DATASETS) },
  { flag: "--data-dir <dir>", help: "folder with the dataset's files (required for cifar10)", parse: text },
  { flag: "--steps <n>", help: "fine-tuning steps", parse: integer },
  { flag: "--batch-size <n>", help: "images per step", parse: integer },
  { flag: "--lr <x>", help: "learning rate (constant after the warmup)", parse: number },
  { flag: "--warmup <n>", help: "linear learning-rate warmup steps", parse: integer },
  { flag: "--seed <n>", help: "seed of the data order and every random draw", parse: integer },
  {
    flag: "--lambda-unit <x>",
    help: "lambda_t = clamp(x sqrt(abar) / sqrt(1 - abar), 0, max)",
    parse: number,
  },
  { flag: "--lambda-max <x>", help: "ceiling of lambda_t", parse: number },
  { flag: "--cgpo-steps <n>", help: "CGPO iterations K (PGD steps for linf)", parse: integer },
  {
    flag: "--linf-eps <x>",
    help: "linf: the budget in [0, 1] pixels, step half of it (default: the dataset's attack eps)",
    parse: number,
  },
  ...OPTIMIZER_FLAGS,
  ...EMA_FLAGS,
  { flag: "--dropout <x>", help: "resnet dropout", parse: number },
  ...CHECKPOINT_FLAGS,
];

/** Add `finetune` to a program (replacing a placeholder); `setExit` receives the run's exit code. */
export function registerFinetuneCommand(program: Command, setExit: (code: number) => void): void {
  const existing = program.commands.findIndex((c) => c.name() === "finetune");
  if (existing >= 0) (program.commands as Command[]).splice(existing, 1);
  const defaults = finetuneDefaults("");
  const cmd = program.command("finetune")
    .description("fine-tune a DDPM with ADDT (CGPO + RBGM) or an ablation: clean, mse, linf");
  for (const f of withDefaults(FLAGS, defaults)) cmd.option(f.flag, f.help);
  cmd.action(async (opts) => {
    const flow = pipe(
      TE.fromEither(settingsFromFlags(FLAGS, opts as Record<string, unknown>, defaults)),
      TE.chainW(({ settings, explicit }) => runFinetune(settings, { explicit })),
    );
    setExit(await exitCodeOf(flow, (r) => console.log(formatFinetuneReport(r))));
  });
}
