/**
 * `addt eval-clean`: flags -> validated CleanConfig -> src/eval/clean.ts (classifier accuracy, then the
 * purified clean accuracy per sampler and t*) -> the Markdown table on stdout, report.json and report.md
 * in --out. Rerunning the same command with the same --out continues a stopped run (progress.json).
 */
import type { Command } from "@commander-js/extra-typings";
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { exitCodeOf, UsageError } from "./errors.ts";
import { DATASETS } from "../train/settings.ts";
import {
  CLEAN_SAMPLERS,
  type CleanConfig,
  cleanDefaults,
  cleanMarkdown,
  runCleanPipeline,
} from "../eval/clean.ts";
import { integer, listOf, oneOf, type Parse, text } from "./flags.ts";

interface Flag {
  flag: string;
  help: string;
  /** null: a boolean switch. */
  parse: Parse | null;
}

const d = cleanDefaults();

const FLAGS: Flag[] = [
  { flag: "--classifier <dir>", help: "the classifier's training run folder (required)", parse: text },
  {
    flag: "--ddpm <dir>",
    help: "the DDPM's training run folder (required; EMA weights when present)",
    parse: text,
  },
  { flag: "--no-ema", help: "use the DDPM's raw weights instead of its EMA", parse: null },
  {
    flag: "--dataset <name>",
    help: `${DATASETS.join(" | ")} (default: ${d.dataset})`,
    parse: oneOf(DATASETS),
  },
  { flag: "--data-dir <dir>", help: "folder with the dataset's files", parse: text },
  {
    flag: "--t-star <list>",
    help: `diffusion times, comma-separated (default: ${d.tStars.join(",")})`,
    parse: listOf(integer),
  },
  {
    flag: "--sampler <list>",
    help: `ddpm (DP_DDPM, fixed_large) | ddim (DP_DDIM, eta 0), comma-separated (default: ${
      d.samplers.join(",")
    })`,
    parse: listOf(oneOf(CLEAN_SAMPLERS)),
  },
  {
    flag: "--nfe <n>",
    help: `reverse strides from t* to 0; nfe + 1 UNet calls (default: ${d.nfe})`,
    parse: integer,
  },
  { flag: "--n <n>", help: `test images (default: ${d.n})`, parse: integer },
  { flag: "--offset <n>", help: "first test image (default: 0)", parse: integer },
  { flag: "--batch-size <n>", help: `images purified at once (default: ${d.batchSize})`, parse: integer },
  { flag: "--seed <n>", help: "seed of the purifier noise (default: 0)", parse: integer },
  { flag: "--out <dir>", help: "folder for report.json, report.md and progress.json (resume)", parse: text },
];

/** commander's attribute name: "--t-star <list>" -> "tStar", "--no-ema" -> "ema". */
const keyOf = (flag: string) =>
  flag.split(" ")[0].replace(/^--(no-)?/, "").replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());

/** Where a flag goes in the config when its name differs. */
const CONFIG_KEYS: Record<string, keyof CleanConfig> = { tStar: "tStars", sampler: "samplers" };

/** The config from parsed commander options (defaults for what is not given); UsageError on a bad value. */
export function cleanConfigFromFlags(given: Record<string, unknown>): CleanConfig {
  const config = cleanDefaults() as unknown as Record<string, unknown>;
  for (const f of FLAGS) {
    const key = keyOf(f.flag), raw = given[key];
    if (raw === undefined) continue;
    if (f.parse === null) {
      // commander sets negated switches to false only when given ("--no-ema")
      if (raw === false) config[key] = false;
      continue;
    }
    const v = f.parse(String(raw), f.flag.split(" ")[0]);
    if (E.isLeft(v)) throw new UsageError(v.left);
    config[CONFIG_KEYS[key] ?? key] = v.right;
  }
  return config as unknown as CleanConfig;
}

export function registerEvalCleanCommand(program: Command, setExit: (code: number) => void): void {
  const cmd = program.command("eval-clean").description(
    "clean accuracy of the classifier alone and behind DP_DDPM / DP_DDIM at each t* (resumable)",
  );
  for (const f of FLAGS) cmd.option(f.flag, f.help);
  cmd.action(async (opts) => {
    const flow = pipe(
      TE.tryCatch(
        () => Promise.resolve().then(() => cleanConfigFromFlags(opts as Record<string, unknown>)),
        (e) => e,
      ),
      TE.chainW((config) => runCleanPipeline(config)),
    );
    setExit(await exitCodeOf(flow, (report) => console.log(cleanMarkdown(report))));
  });
}
