/** Number formats shared by the report's tables, plots and Markdown, so the same value reads the same. */
import type { AccuracyPoint, ComparisonRow } from "./types.ts";

/** A fraction as a percent with one decimal, e.g. "47.3%". */
export function percent(x: number, digits = 1): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : "n/a";
}

/** An accuracy with its interval, e.g. "47.3% [41.2, 53.5]". */
export function pointText(p: AccuracyPoint): string {
  if (!Number.isFinite(p.acc)) return "n/a";
  return `${percent(p.acc)} [${(p.lo * 100).toFixed(1)}, ${(p.hi * 100).toFixed(1)}]`;
}

/** ADDT minus vanilla in percentage points, signed, e.g. "+4.2". */
export function deltaText(vanilla: AccuracyPoint, addt: AccuracyPoint): string {
  const d = (addt.acc - vanilla.acc) * 100;
  if (!Number.isFinite(d)) return "n/a";
  return `${d >= 0 ? "+" : "\u2212"}${Math.abs(d).toFixed(1)}`;
}

/** Sample counts of a row: one number when both models saw the same images. */
export function countText(row: ComparisonRow): string {
  return row.vanilla.n === row.addt.n ? String(row.vanilla.n) : `${row.vanilla.n} / ${row.addt.n}`;
}

/** Seconds as "12.3 s", "4 min 05 s" or "1 h 02 min". */
export function durationText(seconds: number): string {
  if (!Number.isFinite(seconds)) return "n/a";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

export const NORM_LABELS: Record<string, string> = { linf: "Linf", l2: "L2" };

/** Whether any row carries the optional mean-over-K accuracies (extra table columns). */
export const hasMeanK = (rows: ComparisonRow[]): boolean =>
  rows.some((r) => r.vanillaMeanK !== undefined || r.addtMeanK !== undefined);
