/**
 * `addt finetune`: fine-tune a DDPM run with ADDT (or an ablation): flags -> validated settings -> the
 * pipeline of src/addt/pipeline.ts -> one report, or one error line and a non-zero exit code.
 *
 * As for train-ddpm, flags carry no commander defaults: the defaults live in src/addt/settings.ts (shown in
 * --help), and the flags actually given are the "explicit" settings that a resumed run must agree with.
 */
import type { Command } from "@commander-js/extra-typings";
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { exitCodeOf } from "./errors.ts";
import { settingsFromFlags } from "./train.ts";
import { integer, number, oneOf, type Parse, text } from "./flags.ts";
import { DATASETS } from "../train/settings.ts";
import { finetuneDefaults, type FinetuneSettings, METHODS } from "../addt/settings.ts";
import { formatFinetuneReport, runFinetune } from "../addt/pipeline.ts";

const numberOrNone: Parse = (v, f) => v === "none" ? E.right(null) : number(v, f);
const pair: Parse = (v, f) => {
  const xs = v.split(",").map(Number);
  return xs.length === 2 && xs.every(Number.isFinite)
    ? E.right(xs)
    : E.left(`${f} expects two numbers a,b, got "${v}"`);
};

interface Flag {
  flag: string;
  help: string;
  parse: Parse | null; // null: a boolean switch
}

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
  { flag: "--weight-decay <x>", help: "AdamW decoupled weight decay", parse: number },
  { flag: "--grad-clip <x|none>", help: "clip the global gradient norm", parse: numberOrNone },
  { flag: "--adam-betas <b1,b2>", help: "AdamW betas", parse: pair },
  { flag: "--ema-max-decay <x>", help: "EMA decay ceiling", parse: number },
  { flag: "--ema-inv-gamma <x>", help: "EMA warmup inv_gamma", parse: number },
  { flag: "--ema-power <x>", help: "EMA warmup power", parse: number },
  { flag: "--dropout <x>", help: "resnet dropout", parse: number },
  { flag: "--log-every <n>", help: "steps between log lines (loss read back from the GPU)", parse: integer },
  { flag: "--checkpoint-every <n>", help: "steps between checkpoints", parse: integer },
  { flag: "--keep <n>", help: "checkpoints kept on disk", parse: integer },
  { flag: "--resume", help: "continue the run in --out from its last checkpoint", parse: null },
];

const keyOf = (flag: string) =>
  flag.split(" ")[0].slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The help text with each flag's default. */
function withDefaults(flags: readonly Flag[], defaults: FinetuneSettings): Flag[] {
  return flags.map((f) => {
    const v = (defaults as unknown as Record<string, unknown>)[keyOf(f.flag)];
    const shown = v === null || v === undefined || v === false || v === "" || f.help.includes("(default:")
      ? ""
      : ` (default: ${Array.isArray(v) ? v.join(",") : v})`;
    return { ...f, help: f.help + shown };
  });
}

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
