/**
 * The data of a main-job report (`addt` with no subcommand): vanilla DBP vs ADDT under the same attacks.
 * The main job (src/main) fills it from its evaluation reports; src/report renders it as report.json,
 * report.md and a self-contained report.html with SVG plots and PNG image grids.
 */
import type { EvalReport } from "../eval/report.ts";

export const MAIN_REPORT_FORMAT = "addt-main/1";

/** An accuracy with its 95% Wilson interval over n samples (fractions in [0, 1]). */
export interface AccuracyPoint {
  acc: number;
  lo: number;
  hi: number;
  n: number;
}

/** One attack setting evaluated on both models. */
export interface ComparisonRow {
  /** "DP_DDPM" | "DP_DDIM" */
  defense: string;
  /** Short label, e.g. "PGD-10 EOT-1 Linf 0.3" (src/eval/config.ts attackLabel). */
  label: string;
  /** "clean" for the clean row, else the attack name ("pgd", "apgd-ce", "autoattack-rand", ...). */
  attack: string;
  norm: "linf" | "l2" | null;
  eps: number | null;
  /** "fresh" | "dw_fwd" | "dw_rev" | "dw_both" | null (clean) */
  mode: string | null;
  /** Attack iterations and gradient draws per step (null for the clean row). */
  steps?: number | null;
  eot?: number | null;
  /** The paper's protocol: one evaluation of the final image with fresh randomness. */
  vanilla: AccuracyPoint;
  addt: AccuracyPoint;
  /** Mean over K fresh evaluations and worst case over K (optional extras for the tables). */
  vanillaMeanK?: AccuracyPoint;
  addtMeanK?: AccuracyPoint;
}

/** A PNG written into the report folder, shown in the HTML (embedded as a data URI). */
export interface ImageGrid {
  title: string;
  /** File name relative to the report folder, e.g. "clean.png". */
  file: string;
  caption?: string;
}

export interface MainReport {
  format: typeof MAIN_REPORT_FORMAT;
  title: string;
  /** The resolved options of the run (printed at start). */
  config: Record<string, unknown>;
  seed: number;
  commit: string;
  adapter: { description: string; isSoftware: boolean; backend: string };
  started: string;
  wallSeconds: number;
  /** Seconds per stage, in order ("evaluate vanilla", "fine-tune", ...). */
  timings: { stage: string; seconds: number }[];
  /** Plain sentences shown at the top, e.g. "Loaded the shipped ADDT weights (weights/mnist-addt)". */
  notes: string[];
  /** Where each model came from. */
  models: { vanilla: string; addt: string; classifier: string };
  /** Every attack setting, including the clean rows and the eps sweep points. */
  rows: ComparisonRow[];
  /** The fine-tuning loss curve (train.jsonl of the ADDT run). */
  lossCurve: { step: number; loss: number }[];
  /** clean, adversarial, purified by vanilla, purified by ADDT (in that order when present). */
  images: ImageGrid[];
  /** The full evaluation reports behind the rows (per model and defense), for report.json. */
  evals: { model: "vanilla" | "addt"; defense: string; report: EvalReport }[];
}
