/**
 * `addt eval`: flags (or `--config FILE`, a JSON EvalConfig, with flags given explicitly overriding it) ->
 * validated config -> the evaluation pipeline (src/eval/pipeline.ts) -> the Markdown report on stdout,
 * report.json and report.md in --out. Comma lists in --attack, --norm, --eps, --mode and --gradient make
 * one attack setting per combination, all run on the same images (a table, an eps sweep).
 */
import { Command } from "@commander-js/extra-typings";
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { exitCodeOf, UsageError } from "./errors.ts";
import { type DatasetName, DATASETS } from "../train/settings.ts";
import { NOISE_MODES } from "../defense/noise_plan.ts";
import {
  attackDefaults,
  ATTACKS,
  type AttackSpec,
  configFromJson,
  DEFENSES,
  type EvalConfig,
  EvalConfigError,
  evalDefaults,
  GRADIENTS,
  NORMS,
  validateEvalConfig,
} from "../eval/config.ts";
import { runEvalPipeline } from "../eval/pipeline.ts";
import { reportMarkdown } from "../eval/report.ts";
import { integer, listOf, number, oneOf, type Parse, text } from "./flags.ts";

interface Flag {
  flag: string;
  help: string;
  /** null: a boolean switch. */
  parse: Parse | null;
  /** Where it goes: the run config or the attack settings. */
  target: "config" | "attack";
}

const FLAGS: Flag[] = [
  {
    flag: "--config <file>",
    help: "a JSON EvalConfig (flags given explicitly override it)",
    parse: text,
    target: "config",
  },
  {
    flag: "--dataset <name>",
    help: DATASETS.join(" | ") + " (default: mnist)",
    parse: oneOf(DATASETS),
    target: "config",
  },
  { flag: "--data-dir <dir>", help: "folder with the dataset's files", parse: text, target: "config" },
  { flag: "--classifier <dir>", help: "the classifier's training run folder", parse: text, target: "config" },
  {
    flag: "--ddpm <dir>",
    help: "the DDPM's training run folder (EMA weights when present)",
    parse: text,
    target: "config",
  },
  { flag: "--no-ema", help: "use the DDPM's raw weights instead of its EMA", parse: null, target: "config" },
  {
    flag: "--no-checkpoint",
    help: "keep the reverse steps' activations instead of recomputing them in the backward pass: the same " +
      "gradient, about 1.4x faster attacks, memory growing with NFE x batch",
    parse: null,
    target: "config",
  },
  {
    flag: "--defense <name>",
    help: DEFENSES.join(" | ") + " (default: dp_ddpm)",
    parse: oneOf(DEFENSES),
    target: "config",
  },
  {
    flag: "--t-star <n>",
    help: "diffusion time of the purification (default: 100)",
    parse: integer,
    target: "config",
  },
  {
    flag: "--nfe <n>",
    help: "reverse strides from t* to 0, the paper's NFE; the UNet runs nfe + 1 times (default: 10)",
    parse: integer,
    target: "config",
  },
  {
    flag: "--attack <list>",
    help: ATTACKS.join(" | ") + ", comma-separated (default: pgd)",
    parse: listOf(oneOf(ATTACKS)),
    target: "attack",
  },
  {
    flag: "--norm <list>",
    help: "linf | l2, comma-separated (default: linf)",
    parse: listOf(oneOf(NORMS)),
    target: "attack",
  },
  {
    flag: "--eps <list>",
    help: "budgets, comma-separated (default: 0.3 Linf / 2.0 L2 on MNIST)",
    parse: listOf(number),
    target: "attack",
  },
  { flag: "--alpha <x>", help: "step size (default: eps/4 Linf, eps/5 L2)", parse: number, target: "attack" },
  {
    flag: "--steps <n>",
    help: "attack iterations (default: 20; APGD 100)",
    parse: integer,
    target: "attack",
  },
  {
    flag: "--eot <n>",
    help: "gradient draws per step (default: 1; AutoAttack-rand 20)",
    parse: integer,
    target: "attack",
  },
  {
    flag: "--mode <list>",
    help: NOISE_MODES.join(" | ") +
      ": which purifier noise the attacker fixes, comma-separated (default: fresh)",
    parse: listOf(oneOf(NOISE_MODES)),
    target: "attack",
  },
  {
    flag: "--gradient <list>",
    help: "exact | bpda, comma-separated (default: exact)",
    parse: listOf(oneOf(GRADIENTS)),
    target: "attack",
  },
  { flag: "--random-start", help: "PGD from a random point of the ball", parse: null, target: "attack" },
  { flag: "--restarts <n>", help: "APGD runs (default: 1)", parse: integer, target: "attack" },
  {
    flag: "--k <n>",
    help: "evaluations of each final image with fresh randomness (default: 20)",
    parse: integer,
    target: "config",
  },
  { flag: "--n <n>", help: "test images (default: 256)", parse: integer, target: "config" },
  { flag: "--offset <n>", help: "first test image (default: 0)", parse: integer, target: "config" },
  {
    flag: "--batch-size <n>",
    help: "images attacked at once (default: 32)",
    parse: integer,
    target: "config",
  },
  { flag: "--seed <n>", help: "seed of every random draw (default: 0)", parse: integer, target: "config" },
  {
    flag: "--out <dir>",
    help: "folder for report.json, report.md and progress.json (saved after every batch: rerunning the " +
      "same command continues a stopped run; a larger --n reuses the finished batches)",
    parse: text,
    target: "config",
  },
  {
    flag: "--no-undefended-check",
    help: "skip the undefended classifier's PGD sanity check",
    parse: null,
    target: "config",
  },
];

/** commander's attribute name: "--t-star <n>" -> "tStar", "--no-ema" -> "ema". */
const keyOf = (flag: string) =>
  flag.split(" ")[0].replace(/^--(no-)?/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

const CONFIG_KEYS: Record<string, keyof EvalConfig> = { undefendedCheck: "checkUndefended" };

async function readConfigFile(path: string): Promise<EvalConfig> {
  let value: unknown;
  try {
    value = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new EvalConfigError(`--config ${path}: ${why}`);
  }
  const c = configFromJson(value, path);
  if (E.isLeft(c)) throw c.left;
  return c.right;
}

/** The config from parsed commander options: the file (or the defaults), then the explicit flags. */
export async function configFromFlags(given: Record<string, unknown>): Promise<EvalConfig> {
  const parsed: Record<string, unknown> = {};
  for (const f of FLAGS) {
    const key = keyOf(f.flag), raw = given[key];
    if (raw === undefined) continue;
    if (f.parse === null) {
      // commander sets negated switches to false only when given ("--no-ema"), true by default
      if (f.flag.startsWith("--no-") ? raw === false : raw === true) parsed[key] = raw;
      continue;
    }
    const v = f.parse(String(raw), f.flag.split(" ")[0]);
    if (E.isLeft(v)) throw new UsageError(v.left);
    parsed[key] = v.right;
  }
  const file = parsed.config as string | undefined;
  const dataset = parsed.dataset as DatasetName | undefined;
  const base = file ? await readConfigFile(file) : evalDefaults(dataset ? { dataset } : {});
  const config: EvalConfig = { ...base };
  const attackFlags = FLAGS.filter((f) => f.target === "attack").map((f) => keyOf(f.flag));
  for (const f of FLAGS.filter((f) => f.target === "config")) {
    const key = keyOf(f.flag);
    if (key === "config" || parsed[key] === undefined) continue;
    (config as unknown as Record<string, unknown>)[CONFIG_KEYS[key] ?? key] = parsed[key];
  }
  if (attackFlags.some((k) => parsed[k] !== undefined)) config.attacks = attackGrid(config.dataset, parsed);
  return config;
}

/** One attack setting per combination of the list flags. */
function attackGrid(dataset: DatasetName, p: Record<string, unknown>): AttackSpec[] {
  const list = <T>(k: string, fallback: T[]) => (p[k] as T[] | undefined) ?? fallback;
  const out: AttackSpec[] = [];
  for (const attack of list<AttackSpec["attack"]>("attack", ["pgd"])) {
    for (const norm of list<AttackSpec["norm"]>("norm", ["linf"])) {
      for (const eps of list<number | undefined>("eps", [undefined])) {
        for (const mode of list<AttackSpec["mode"]>("mode", ["fresh"])) {
          for (const gradient of list<AttackSpec["gradient"]>("gradient", ["exact"])) {
            const o: Partial<AttackSpec> = { attack, norm, mode, gradient };
            if (eps !== undefined) o.eps = eps;
            for (const k of ["alpha", "steps", "eot", "restarts", "randomStart"] as const) {
              if (p[k] !== undefined) (o as Record<string, unknown>)[k] = p[k];
            }
            out.push(attackDefaults(dataset, o));
          }
        }
      }
    }
  }
  return out;
}

/**
 * The validated config that `addt eval ARGS...` would run, without running it (for scripts and the test of
 * tasks/results.sh): bad flags and invalid configs throw the CLI's errors.
 */
export async function evalConfigFromArgs(args: readonly string[]): Promise<EvalConfig> {
  const cmd = new Command("eval").exitOverride().configureOutput({ writeErr: () => {} });
  for (const f of FLAGS) cmd.option(f.flag, f.help);
  cmd.parse([...args], { from: "user" });
  const config = await configFromFlags(cmd.opts() as Record<string, unknown>);
  const valid = validateEvalConfig(config);
  if (E.isLeft(valid)) throw valid.left;
  return valid.right;
}

/** Add `eval` to a program (replacing a placeholder of that name); `setExit` receives the exit code. */
export function registerEvalCommand(program: Command, setExit: (code: number) => void): void {
  const existing = program.commands.findIndex((c) => c.name() === "eval");
  if (existing >= 0) (program.commands as Command[]).splice(existing, 1);
  const cmd = program.command("eval").description(
    "robust accuracy of a (purified) classifier under attack: PGD/EOT, DW_Fwd/DW_Rev/DW_Both, APGD, AutoAttack-rand, BPDA",
  );
  for (const f of FLAGS) cmd.option(f.flag, f.help);
  cmd.action(async (opts) => {
    const flow = pipe(
      TE.tryCatch(() => configFromFlags(opts as Record<string, unknown>), (e) => e),
      TE.chainW((config) => runEvalPipeline(config)),
    );
    setExit(await exitCodeOf(flow, (report) => console.log(reportMarkdown(report))));
  });
}
