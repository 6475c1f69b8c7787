/**
 * `addt` with no subcommand: the main job (src/main/pipeline.ts), vanilla DBP vs ADDT with a report.
 * Its flags are the program's own options; positional options keep them before any subcommand, so
 * `addt eval --n 4` still gives `--n` to `eval` (commander otherwise lets program options appear anywhere
 * and would take it).
 */
import type { Command } from "@commander-js/extra-typings";
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { exitCodeOf, UsageError } from "./errors.ts";
import { integer, listOf, number, oneOf, type Parse, text } from "./flags.ts";
import { type DatasetName, DATASETS } from "../train/settings.ts";
import { FULL_PROTOCOL, MAIN_DEFENSES, type MainConfig, mainDefaults } from "../main/defaults.ts";
import { runMainJob } from "../main/pipeline.ts";

interface Flag {
  flag: string;
  help: string;
  /** null: a boolean switch. */
  parse: Parse | null;
  /** The MainConfig field (default: the flag's camel-cased name). */
  key?: keyof MainConfig;
}

const d = mainDefaults();

export const MAIN_FLAGS: Flag[] = [
  { flag: "--out <dir>", help: `folder of the report and image grids (default: ${d.out})`, parse: text },
  { flag: "--dataset <name>", help: `${DATASETS.join(" | ")} (default: mnist)`, parse: oneOf(DATASETS) },
  {
    flag: "--data-dir <dir>",
    help: "folder with the dataset's files (required for cifar10)",
    parse: text,
  },
  { flag: "--classifier <dir>", help: `classifier run folder (default: ${d.classifier})`, parse: text },
  { flag: "--ddpm <dir>", help: `vanilla DDPM run folder (default: ${d.ddpm})`, parse: text },
  {
    flag: "--addt <dir>",
    help: `shipped ADDT DDPM run folder, used without --finetune-steps (default: ${d.addt})`,
    parse: text,
  },
  {
    flag: "--finetune-steps <n>",
    help:
      "fine-tune --ddpm with ADDT for n steps into <out>/addt and evaluate that (default: 0, load --addt)",
    parse: integer,
  },
  {
    flag: "--finetune-batch-size <n>",
    help: "the fine-tune's batch size (default: the paper's, 64)",
    parse: integer,
  },
  {
    flag: "--defense <list>",
    help: `${MAIN_DEFENSES.join(",")}, comma-separated (default: ${d.defenses.join(",")})`,
    parse: listOf(oneOf(MAIN_DEFENSES)),
    key: "defenses",
  },
  { flag: "--t-star <n>", help: `purification time t* (default: ${d.tStar})`, parse: integer },
  { flag: "--nfe <n>", help: `reverse strides from t* to 0 (default: ${d.nfe})`, parse: integer },
  { flag: "--n <n>", help: `test images (default: ${d.n}; --full: 128)`, parse: integer },
  { flag: "--steps <n>", help: `PGD iterations (default: ${d.steps}; --full: 20)`, parse: integer },
  { flag: "--eot <n>", help: `EOT draws per PGD step (default: ${d.eot}; --full: 10)`, parse: integer },
  { flag: "--k <n>", help: `evaluations per final image (default: ${d.k}; --full: 20)`, parse: integer },
  { flag: "--seed <n>", help: `seed of every random draw (default: ${d.seed})`, parse: integer },
  { flag: "--batch-size <n>", help: `images attacked at once (default: ${d.batchSize})`, parse: integer },
  {
    flag: "--eps-sweep <list>",
    help: `Linf budgets of the PGD sweep, comma-separated; the standard budget is always in (default: ${
      d.epsSweep.join(",")
    })`,
    parse: listOf(number),
  },
  { flag: "--l2", help: "add the L2 rows (standard budget, fresh and DW_Both)", parse: null },
  {
    flag: "--auto-attack-n <n>",
    help: "images of the AutoAttack-rand rows (default: 0, none; --full: 16)",
    parse: integer,
  },
  {
    flag: "--full",
    help: "the issue's full protocol: 128 images, PGD-20 EOT-10 Linf and L2, DW_Both, K 20, " +
      "AutoAttack-rand on 16 images (days on a software adapter: the cost is printed at start)",
    parse: null,
  },
];

/** commander's attribute name: "--t-star <n>" -> "tStar". */
const keyOf = (flag: string) =>
  flag.split(" ")[0].replace(/^--/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The config from commander's options: defaults, then --full, then the flags given. */
export function mainConfigFromFlags(given: Record<string, unknown>): MainConfig {
  const parsed: Partial<Record<keyof MainConfig, unknown>> = {};
  for (const f of MAIN_FLAGS) {
    const raw = given[keyOf(f.flag)];
    if (raw === undefined) continue;
    const key = f.key ?? (keyOf(f.flag) as keyof MainConfig);
    if (f.parse === null) {
      parsed[key] = raw === true;
      continue;
    }
    const v = f.parse(String(raw), f.flag.split(" ")[0]);
    if (E.isLeft(v)) throw new UsageError(v.left);
    parsed[key] = v.right;
  }
  const dataset = parsed.dataset as DatasetName | undefined;
  const full = parsed.full === true ? FULL_PROTOCOL : {};
  return mainDefaults({ ...(dataset ? { dataset } : {}), ...full, ...parsed as Partial<MainConfig> });
}

/** Make the main job the program's default action; `setExit` receives the exit code. */
export function registerMainJob(program: Command, setExit: (code: number) => void): void {
  program.enablePositionalOptions();
  for (const f of MAIN_FLAGS) program.option(f.flag, f.help);
  program.addHelpText(
    "after",
    "\nWith no command: the main job, vanilla DBP vs ADDT evaluated the same way, with report.json/md/html\n" +
      "and image grids in --out (the options above; they go before any command).",
  );
  program.action(async () => {
    const opts = program.opts() as Record<string, unknown>;
    const flow = pipe(
      TE.fromEither(E.tryCatch(() => mainConfigFromFlags(opts), (e) => e)),
      TE.chainW((config) => runMainJob(config)),
    );
    setExit(
      await exitCodeOf(flow, (r) => {
        const out = r.report.config.out as string;
        console.log(r.table);
        console.log("");
        for (const note of r.report.notes) console.log(`Note: ${note}`);
        console.log(`Report: ${out}/report.html, ${out}/report.md, ${out}/report.json`);
        console.log(`Images: ${r.report.images.map((g) => `${out}/${g.file}`).join(", ")}`);
      }),
    );
  });
}
