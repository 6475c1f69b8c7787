/**
 * A realistic main report for the report tests: both defenses with clean, PGD fresh (Linf and L2) and
 * DW_Both rows, a 3-point Linf eps sweep on DP_DDPM, a 50-point loss curve, and four small PNG grids
 * (clean, adversarial, purified by each model) written into a folder. Labels come from the evaluation's
 * own attackLabel and intervals from its Wilson formula, so the rows look like the main job's.
 */
import { attackDefaults, attackLabel, type AttackSpec } from "../src/eval/config.ts";
import { wilson } from "../src/eval/stats.ts";
import { writeGridPng } from "../src/io/png.ts";
import {
  type AccuracyPoint,
  type ComparisonRow,
  MAIN_REPORT_FORMAT,
  type MainReport,
} from "../src/report/types.ts";
import { rng } from "./util.ts";

export function point(correct: number, n: number): AccuracyPoint {
  const [lo, hi] = wilson(correct, n);
  return { acc: correct / n, lo, hi, n };
}

function attackRow(
  defense: string,
  spec: Partial<AttackSpec>,
  vanilla: number,
  addt: number,
  n: number,
): ComparisonRow {
  const a = attackDefaults("mnist", spec);
  return {
    defense,
    label: attackLabel(a),
    attack: a.attack,
    norm: a.norm,
    eps: a.eps,
    mode: a.mode,
    vanilla: point(vanilla, n),
    addt: point(addt, n),
    vanillaMeanK: point(Math.min(n, vanilla + 3), n),
    addtMeanK: point(Math.min(n, addt + 2), n),
  };
}

function cleanRow(defense: string, vanilla: number, addt: number, n: number): ComparisonRow {
  const mode = null, norm = null, eps = null;
  return {
    defense,
    label: "clean",
    attack: "clean",
    norm,
    eps,
    mode,
    vanilla: point(vanilla, n),
    addt: point(addt, n),
  };
}

export const FIXTURE_IMAGES = [
  { title: "Clean", file: "clean.png", caption: "First 16 test images" },
  {
    title: "Adversarial",
    file: "adversarial.png",
    caption: "PGD-20 EOT-10 Linf 0.3 against vanilla DP_DDPM",
  },
  { title: "Purified (vanilla)", file: "purified-vanilla.png" },
  { title: "Purified (ADDT)", file: "purified-addt.png" },
];

export function fixtureReport(): MainReport {
  const pgd = { attack: "pgd" as const, steps: 20, eot: 10 };
  const rows: ComparisonRow[] = [];
  for (const [defense, shift] of [["DP_DDPM", 0], ["DP_DDIM", -9]] as const) {
    rows.push(
      cleanRow(defense, 250 + Math.round(shift / 3), 249 + Math.round(shift / 3), 256),
      attackRow(defense, { ...pgd, norm: "linf", eps: 0.3 }, 60 + shift, 66 + shift, 128),
      attackRow(defense, { ...pgd, norm: "l2", eps: 2 }, 82 + shift, 88 + shift, 128),
      attackRow(
        defense,
        { ...pgd, norm: "linf", eps: 0.3, mode: "dw_both", eot: 1 },
        30 + shift,
        71 + shift,
        256,
      ),
    );
  }
  rows.push(
    attackRow("DP_DDPM", { ...pgd, norm: "linf", eps: 0.1 }, 118, 120, 128),
    attackRow("DP_DDPM", { ...pgd, norm: "linf", eps: 0.2 }, 95, 101, 128),
  );
  const r = rng(7);
  const lossCurve = Array.from({ length: 50 }, (_, i) => ({
    step: 10 * (i + 1),
    loss: 0.03 + 0.12 * Math.exp(-i / 12) + 0.01 * (r() - 0.5),
  }));
  return {
    format: MAIN_REPORT_FORMAT,
    title: "ADDT on MNIST: vanilla DBP vs ADDT",
    config: { dataset: "mnist", n: 128, steps: 500, lambdaUnit: 0.03, attacks: ["pgd-20 eot-10 linf 0.3"] },
    seed: 1234,
    commit: "0123456789abcdef0123456789abcdef01234567",
    adapter: { description: "llvmpipe (LLVM 15.0.6, 256 bits)", isSoftware: true, backend: "vulkan" },
    started: "2025-01-02T03:04:05.000Z",
    wallSeconds: 583.2,
    timings: [
      { stage: "evaluate vanilla", seconds: 201.5 },
      { stage: "fine-tune", seconds: 180.25 },
      { stage: "evaluate ADDT", seconds: 199.9 },
      { stage: "report", seconds: 1.55 },
    ],
    notes: ["Fine-tuned for 500 steps from weights/mnist-ddpm (EMA).", "Images: test set offset 0."],
    models: {
      vanilla: "weights/mnist-ddpm",
      addt: "out/addt/finetune",
      classifier: "weights/mnist-classifier",
    },
    rows,
    lossCurve,
    images: FIXTURE_IMAGES.map((g) => ({ ...g })),
    evals: [],
  };
}

/** 16 synthetic 28x28 "digits" (rings at varying places), grey in [0, 1]. */
function digits(seed: number, noise: number, blur: boolean): Float32Array {
  const r = rng(seed), n = 16, s = 28, out = new Float32Array(n * s * s);
  for (let i = 0; i < n; i++) {
    const cx = 10 + (i % 4) * 2.5, cy = 10 + Math.floor(i / 4) * 2.5, rad = 5 + (i % 3);
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const d = Math.abs(Math.hypot(x - cx, y - cy) - rad);
        const v = Math.max(0, 1 - d / (blur ? 2.5 : 1.5)) + noise * (r() * 2 - 1);
        out[(i * s + y) * s + x] = Math.min(1, Math.max(0, v));
      }
    }
  }
  return out;
}

/** Write the four grids into `dir` and return the report that names them. */
export async function writeFixture(dir: string): Promise<MainReport> {
  const shape = [16, 1, 28, 28] as const;
  await writeGridPng(`${dir}/clean.png`, digits(1, 0, false), shape);
  await writeGridPng(`${dir}/adversarial.png`, digits(1, 0.3, false), shape);
  await writeGridPng(`${dir}/purified-vanilla.png`, digits(2, 0.05, true), shape);
  await writeGridPng(`${dir}/purified-addt.png`, digits(3, 0.02, true), shape);
  return fixtureReport();
}

/** Fail with `message` unless `cond` holds. */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

/** Fail unless `actual` and `expected` have the same JSON. */
export function assertEquals<T>(actual: T, expected: T, message: string): void {
  const [a, e] = [JSON.stringify(actual), JSON.stringify(expected)];
  if (a !== e) throw new Error(`${message}: got ${a}, expected ${e}`);
}
