/**
 * `addt train-classifier` and `addt train-ddpm`: flags -> validated settings -> the training pipelines of
 * src/train/pipeline.ts -> one report, or one error line and a non-zero exit code.
 *
 * Flags carry no commander defaults: the defaults live in src/train/settings.ts (shown in --help), and the
 * flags actually given are the "explicit" settings that a resumed run must agree with.
 */
import type { Command } from "@commander-js/extra-typings";
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { exitCodeOf, UsageError } from "./errors.ts";
import { formatReport, trainClassifier, trainDdpm, type TrainReport } from "../train/pipeline.ts";
import {
  classifierDefaults,
  type ClassifierSettings,
  DATASETS,
  ddpmDefaults,
  type DdpmSettings,
  type TrainSettings,
} from "../train/settings.ts";
import {
  fail,
  type Flag,
  integer,
  keyOf,
  number,
  numberOrNone,
  oneOf,
  pair,
  type Parse,
  text,
  withDefaults,
} from "./flags.ts";

const integers: Parse = (v, f) =>
  v === "none"
    ? E.right([])
    : v.split(",").every((x) => /^\d+$/.test(x.trim()))
    ? E.right(v.split(",").map(Number))
    : fail(f, "integers a,b,...", v);

/** AdamW's flags (the trainers and `finetune`). */
export const OPTIMIZER_FLAGS: Flag[] = [
  { flag: "--weight-decay <x>", help: "AdamW decoupled weight decay", parse: number },
  { flag: "--grad-clip <x|none>", help: "clip the global gradient norm", parse: numberOrNone },
  { flag: "--adam-betas <b1,b2>", help: "AdamW betas", parse: pair },
  { flag: "--adam-eps <x>", help: "AdamW epsilon", parse: number },
];

/** The EMA of the weights (DDPM training and `finetune`). */
export const EMA_FLAGS: Flag[] = [
  { flag: "--ema-max-decay <x>", help: "EMA decay ceiling", parse: number },
  { flag: "--ema-inv-gamma <x>", help: "EMA warmup inv_gamma", parse: number },
  { flag: "--ema-power <x>", help: "EMA warmup power", parse: number },
];

/** Logging, checkpoints and resume (the trainers and `finetune`). */
export const CHECKPOINT_FLAGS: Flag[] = [
  { flag: "--log-every <n>", help: "steps between log lines (loss read back from the GPU)", parse: integer },
  { flag: "--checkpoint-every <n>", help: "steps between checkpoints", parse: integer },
  { flag: "--keep <n>", help: "checkpoints kept on disk", parse: integer },
  { flag: "--resume", help: "continue the run in --out from its last checkpoint", parse: null },
];

const COMMON: Flag[] = [
  {
    flag: "--out <dir>",
    help: "output folder: checkpoints, run.json, train.jsonl, final weights (required)",
    parse: text,
  },
  { flag: "--dataset <name>", help: DATASETS.join(" | "), parse: oneOf(DATASETS) },
  { flag: "--data-dir <dir>", help: "folder with the dataset's files (required for cifar10)", parse: text },
  { flag: "--steps <n>", help: "training steps", parse: integer },
  { flag: "--epochs <n>", help: "training epochs (instead of --steps)", parse: integer },
  { flag: "--batch-size <n>", help: "images per step", parse: integer },
  { flag: "--lr <x>", help: "learning rate", parse: number },
  { flag: "--warmup <n>", help: "linear learning-rate warmup steps", parse: integer },
  {
    flag: "--lr-drop-epochs <a,b>",
    help: "epochs at which the learning rate drops (none: never)",
    parse: integers,
  },
  { flag: "--lr-drop-factor <x>", help: "factor of each drop", parse: number },
  ...OPTIMIZER_FLAGS,
  { flag: "--seed <n>", help: "seed of the weights, data order and random draws", parse: integer },
  ...CHECKPOINT_FLAGS,
];

const DDPM: Flag[] = [
  {
    flag: "--config <name|file>",
    help: "UNet config: mnist | cifar10 | a JSON file (default: the dataset's)",
    parse: text,
  },
  { flag: "--timesteps <n>", help: "diffusion steps T", parse: integer },
  { flag: "--beta-start <x>", help: "first beta of the linear schedule", parse: number },
  { flag: "--beta-end <x>", help: "last beta of the linear schedule", parse: number },
  ...EMA_FLAGS,
  { flag: "--dropout <x>", help: "resnet dropout (default: the model config's, 0.1)", parse: number },
];

const CLASSIFIER: Flag[] = [
  {
    flag: "--config <name|file>",
    help: "classifier config: cnn | wrn-28-10 | wrn-16-4 | a JSON file (default: the dataset's)",
    parse: text,
  },
  { flag: "--optimizer <name>", help: "adamw | sgd", parse: oneOf(["adamw", "sgd"]) },
  { flag: "--momentum <x>", help: "SGD momentum", parse: number },
  { flag: "--nesterov", help: "SGD with Nesterov momentum", parse: null },
  { flag: "--eval-every <n>", help: "steps between test evaluations (0: only at the end)", parse: integer },
  { flag: "--eval-limit <n>", help: "test images of a periodic evaluation", parse: integer },
  { flag: "--eval-batch-size <n>", help: "images per evaluation batch", parse: integer },
  { flag: "--flip", help: "random horizontal flips", parse: null },
];

/** Settings from the given flags over the defaults, and the set of settings given explicitly. */
export function settingsFromFlags<S extends TrainSettings>(
  flags: readonly Flag[],
  given: Record<string, unknown>,
  defaults: S,
): E.Either<UsageError, { settings: S; explicit: Set<string> }> {
  const settings = { ...defaults } as Record<string, unknown>;
  const explicit = new Set<string>();
  for (const f of flags) {
    const key = keyOf(f.flag), raw = given[key];
    if (raw === undefined) continue;
    explicit.add(key);
    if (f.parse === null) {
      settings[key] = raw === true;
      continue;
    }
    const parsed = f.parse(String(raw), f.flag.split(" ")[0]);
    if (E.isLeft(parsed)) return E.left(new UsageError(parsed.left));
    settings[key] = parsed.right;
  }
  if (explicit.has("steps") && explicit.has("epochs")) {
    return E.left(new UsageError("give --steps or --epochs, not both"));
  }
  if (explicit.has("steps")) settings.epochs = null;
  if (explicit.has("epochs")) settings.steps = null;
  return E.right({ settings: settings as S, explicit });
}

const finish = (flow: TE.TaskEither<unknown, TrainReport>): Promise<number> =>
  exitCodeOf(flow, (r) => console.log(formatReport(r)));

/** Add train-classifier and train-ddpm to a program; `setExit` receives each run's exit code. */
export function registerTrainCommands(program: Command, setExit: (code: number) => void): void {
  const add = <S extends TrainSettings>(
    name: string,
    description: string,
    flags: Flag[],
    defaults: S,
    train: (s: S, explicit: Set<string>) => TE.TaskEither<Error, TrainReport>,
  ) => {
    const existing = program.commands.findIndex((c) => c.name() === name);
    if (existing >= 0) (program.commands as Command[]).splice(existing, 1); // replace a placeholder
    const cmd = program.command(name).description(description);
    for (const f of withDefaults(flags, defaults)) cmd.option(f.flag, f.help);
    cmd.action(async (opts) => {
      const flow = pipe(
        TE.fromEither(settingsFromFlags(flags, opts as Record<string, unknown>, defaults)),
        TE.chainW(({ settings, explicit }) => train(settings, explicit)),
      );
      setExit(await finish(flow));
    });
  };
  add<DdpmSettings>(
    "train-ddpm",
    "train the diffusion model used for purification (DDPM, epsilon prediction)",
    [...COMMON, ...DDPM],
    ddpmDefaults(""),
    (s, explicit) => trainDdpm(s, { explicit }),
  );
  add<ClassifierSettings>(
    "train-classifier",
    "train the classifier that attacks target and purification protects",
    [...COMMON, ...CLASSIFIER],
    classifierDefaults(""),
    (s, explicit) => trainClassifier(s, { explicit }),
  );
}
