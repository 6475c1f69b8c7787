/**
 * The main job's settings (`deno task addt` with no subcommand): which weights, which defenses, which
 * attacks, how many images. The defaults are chosen so the whole job (vanilla and ADDT evaluated the same
 * way, the image grids, the report) finishes in about 10 minutes on the 2-core llvmpipe software adapter;
 * `--full` selects the full protocol instead (days there: its cost is printed at start).
 *
 * Cost model (src/main/cost.ts on src/eval/cost.ts): the MNIST UNet is 95.9 MFLOP per image; a PGD step
 * through a purifier with NFE strides costs (NFE + 1) x 4 UNet forwards (forward, checkpoint recompute,
 * backward ~2), each evaluation of a final image (NFE + 1) forwards, K times. Default job (DP_DDPM, t* 100,
 * NFE 5, 16 images in one batch, PGD-10 EOT-1 at Linf 0.1 / 0.2 / 0.3 plus PGD-10 DW_Both at 0.3, K 4),
 * per image and model:
 *   attacks     4 settings x 10 steps x 6 x 4                         = 960 UNet forwards
 *   evaluation  clean + 3 fresh settings, K 4 x 6; DW_Both once, 6   = 102 forwards
 * about 102 GFLOP per image and model: 3.3 TFLOP for 16 images and both models, plus the grids (PGD-10 on
 * the same 16 images, 0.4 TFLOP) and the undefended check (classifier only): 3.7 TFLOP in all.
 *
 * Measured on this machine with a DDPM training sharing both cores (shipped weights, `--n 16 --steps 2`,
 * 1.0 TFLOP by the model): 2 min 19 s wall for the whole job, i.e. 7.2 GFLOP/s effective including start-up,
 * data loading and kernel compilation (8.2 GFLOP/s inside an evaluation). The default job at that rate:
 * about 8.5 minutes; on idle cores (about twice the rate) about 4-5 minutes. One batch shape throughout
 * (n = batch size, the grids reuse it) because kernels are compiled per shape.
 */
import { type DatasetName, DATASETS } from "../train/settings.ts";
import { standardEps } from "../eval/config.ts";

export const MAIN_DEFENSES = ["dp_ddpm", "dp_ddim"] as const;
export type MainDefense = typeof MAIN_DEFENSES[number];

export interface MainConfig {
  /** Folder of report.json / report.md / report.html and the PNG grids. */
  out: string;
  dataset: DatasetName;
  /** A folder holding the dataset's files (required for cifar10). */
  dataDir: string | null;
  /** Training run folders (run.json + weights). */
  classifier: string;
  /** The vanilla (clean-trained) DDPM. */
  ddpm: string;
  /** The shipped ADDT DDPM, used when finetuneSteps is 0. */
  addt: string;
  /** > 0: fine-tune `ddpm` with ADDT for this many steps into <out>/addt and evaluate that instead. */
  finetuneSteps: number;
  /** The fine-tune's batch size (null: its default, the paper's). */
  finetuneBatchSize: number | null;
  defenses: MainDefense[];
  tStar: number;
  nfe: number;
  /** Test images (from #0) of the main comparison. */
  n: number;
  /** PGD iterations and EOT draws of every attack setting. */
  steps: number;
  eot: number;
  /** Evaluations of each final image with fresh randomness. */
  k: number;
  seed: number;
  batchSize: number;
  /** Linf budgets of the eps sweep (PGD with fresh noise); the dataset's standard budget is always in. */
  epsSweep: number[];
  /** Add the L2 rows (standard L2 budget, fresh and DW_Both). */
  l2: boolean;
  /** Images of the AutoAttack-rand rows (APGD-CE + APGD-DLR, EOT 20); 0: none. */
  autoAttackN: number;
  /** Whether the full protocol was asked for (recorded in the report). */
  full: boolean;
}

/** Linf sweep points per dataset: a third, two thirds and all of the standard budget. */
export function defaultSweep(dataset: DatasetName): number[] {
  return dataset === "cifar10" ? [2 / 255, 4 / 255, 8 / 255] : [0.1, 0.2, 0.3];
}

export function mainDefaults(overrides: Partial<MainConfig> = {}): MainConfig {
  const dataset = overrides.dataset ?? "mnist";
  const weights = dataset === "mnist" ? "weights/mnist" : `weights/${dataset}`;
  return {
    out: "out/addt-main",
    dataset,
    dataDir: null,
    classifier: `${weights}-cnn`,
    ddpm: `${weights}-ddpm`,
    addt: `${weights}-addt`,
    finetuneSteps: 0,
    finetuneBatchSize: null,
    defenses: ["dp_ddpm"],
    tStar: 100,
    nfe: 5,
    n: 16,
    steps: 10,
    eot: 1,
    k: 4,
    seed: 0,
    batchSize: 16,
    epsSweep: defaultSweep(dataset),
    l2: false,
    autoAttackN: 0,
    full: false,
    ...overrides,
  };
}

/**
 * The full protocol: 128 images, PGD-20 EOT-10 at Linf and L2 (fresh and DW_Both), K 20,
 * AutoAttack-rand on 16 images. On this 2-core software adapter that is days of compute (printed by
 * estimateMainCost at start); it is meant for a real GPU.
 */
export const FULL_PROTOCOL: Partial<MainConfig> = {
  n: 128,
  steps: 20,
  eot: 10,
  k: 20,
  batchSize: 32,
  l2: true,
  autoAttackN: 16,
  full: true,
};

/** Problems with a config, as one line each (empty when it is usable). */
export function mainConfigProblems(c: MainConfig): string[] {
  const problems: string[] = [];
  const posInt = (v: number) => Number.isInteger(v) && v >= 1;
  if (!(DATASETS as readonly string[]).includes(c.dataset)) {
    problems.push(`--dataset must be ${DATASETS.join(" | ")}`);
  }
  if (c.defenses.length === 0) problems.push("--defense: give at least one of dp_ddpm, dp_ddim");
  for (const d of c.defenses) {
    if (!(MAIN_DEFENSES as readonly string[]).includes(d)) {
      problems.push(`--defense must be ${MAIN_DEFENSES.join(" | ")}`);
    }
  }
  for (const [flag, v] of [["--n", c.n], ["--steps", c.steps], ["--eot", c.eot], ["--k", c.k]] as const) {
    if (!posInt(v)) problems.push(`${flag} ${v} must be a positive integer`);
  }
  if (!posInt(c.batchSize)) problems.push(`--batch-size ${c.batchSize} must be a positive integer`);
  if (!posInt(c.tStar) || c.tStar >= 1000) problems.push(`--t-star ${c.tStar} must be in 1..999`);
  if (!posInt(c.nfe) || c.tStar % c.nfe !== 0) {
    problems.push(`--nfe ${c.nfe} must be a positive divisor of --t-star ${c.tStar}`);
  }
  if (!(Number.isInteger(c.finetuneSteps) && c.finetuneSteps >= 0)) {
    problems.push(`--finetune-steps ${c.finetuneSteps} must be >= 0`);
  }
  if (c.finetuneBatchSize !== null && !posInt(c.finetuneBatchSize)) {
    problems.push(`--finetune-batch-size ${c.finetuneBatchSize} must be a positive integer`);
  }
  if (!(Number.isSafeInteger(c.seed) && c.seed >= 0)) problems.push(`--seed ${c.seed} must be >= 0`);
  if (!(Number.isInteger(c.autoAttackN) && c.autoAttackN >= 0)) {
    problems.push(`AutoAttack images ${c.autoAttackN} must be >= 0`);
  }
  if (c.epsSweep.some((e) => !(e > 0 && Number.isFinite(e)))) problems.push("eps sweep values must be > 0");
  return problems;
}

/**
 * Images in the grids: the first evaluation batch. Kernels are specialised to their shapes (batch size
 * included) and compiling the UNet's forward and backward kernels costs about a minute on llvmpipe, so the
 * grids reuse the evaluation's batch shape rather than a smaller one of their own.
 */
export const gridCount = (c: MainConfig): number => Math.min(c.batchSize, c.n);

/** The sweep with the dataset's standard Linf budget in it, ascending, without repeats. */
export function sweepWithStandard(c: MainConfig): number[] {
  // keyed by a rounded value so 0.1 + 0.2 style noise does not make two points; the value kept is exact
  const byKey = new Map<string, number>();
  for (const e of [standardEps(c.dataset, "linf"), ...c.epsSweep]) {
    if (!byKey.has(e.toPrecision(6))) byKey.set(e.toPrecision(6), e);
  }
  return [...byKey.values()].sort((a, b) => a - b);
}
