/**
 * The main report's four plots, built from MainReport rows:
 * (a) robust accuracy, vanilla vs ADDT, one grouped bar per row (one chart per defense);
 * (b) accuracy vs eps for the sweep with the most eps points (rows that differ only in eps);
 * (c) stochastic (fresh noise) vs DW_Both per model, each DW_Both row paired with its fresh row;
 * (d) the fine-tuning loss curve.
 * A plot that has no data to draw comes back with svg null and a note saying why, never an exception.
 */
import { barChart, type Estimate, lineChart, type LineSeries, percentTick, slug } from "./svg.ts";
import { NORM_LABELS, pointText } from "./format.ts";
import type { AccuracyPoint, ComparisonRow, MainReport } from "./types.ts";

export interface Plot {
  /** The <svg> id (or the note's id when there is nothing to draw). */
  id: string;
  title: string;
  svg: string | null;
  /** Why there is no chart, or a remark about it. */
  note: string | null;
  /** A sentence under the chart saying what it shows. */
  caption: string;
}

export const COLORS = {
  vanilla: "#4c78a8",
  addt: "#f58518",
  vanillaLight: "#9ecae9",
  addtLight: "#ffbf79",
  loss: "#54a24b",
};

const DASHES = ["", "6 3", "2 3", "8 3 2 3"];

const estimate = (p: AccuracyPoint, title: string): Estimate => ({
  value: p.acc,
  lo: p.lo,
  hi: p.hi,
  title: `${title}: ${pointText(p)}, n = ${p.n}`,
});

/** Defenses in order of first appearance. */
export function defensesOf(rows: ComparisonRow[]): string[] {
  return [...new Set(rows.map((r) => r.defense))];
}

/** The eps as attackLabel prints it. */
const epsToken = (eps: number) => String(+eps.toPrecision(4));

/** The row's label without its eps: rows with the same key differ only in eps. */
export function sweepKey(row: ComparisonRow): string | null {
  if (row.eps === null || row.norm === null || row.attack === "clean") return null;
  const tokens = row.label.split(" ");
  const at = tokens.findIndex((t, i) => i > 0 && (t === epsToken(row.eps!) || Number(t) === row.eps));
  const rest = at < 0 ? tokens : tokens.filter((_, i) => i !== at);
  return `${row.attack}|${row.norm}|${row.mode ?? "fresh"}|${rest.join(" ")}`;
}

/** Iterations parsed from the label ("PGD-20", "AutoAttack-rand (APGD-100)"); FGSM and unknown: 1. */
export function stepsOf(row: ComparisonRow): number {
  const m = /-(\d+)/.exec(row.label.replace(/\bEOT-\d+/g, ""));
  return m ? Number(m[1]) : 1;
}

export function eotOf(row: ComparisonRow): number {
  const m = /\bEOT-(\d+)/.exec(row.label);
  return m ? Number(m[1]) : 1;
}

const sameEps = (a: number | null, b: number | null) =>
  a !== null && b !== null && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a));

/** (a) Robust accuracy vanilla vs ADDT per row, one chart per defense. */
export function robustPlots(report: MainReport): Plot[] {
  const defenses = defensesOf(report.rows);
  const caption = "Accuracy of the vanilla and the ADDT model under each attack setting (clean included), " +
    "with 95% Wilson intervals; the paper's protocol (one evaluation with fresh randomness).";
  if (defenses.length === 0) {
    return [{ id: "plot-robust", title: "Robust accuracy", svg: null, note: "No evaluation rows.", caption }];
  }
  return defenses.map((defense) => {
    const rows = report.rows.filter((r) => r.defense === defense);
    const id = defenses.length === 1 ? "plot-robust" : `plot-robust-${slug(defense)}`;
    const title = `${defense}: vanilla vs ADDT accuracy`;
    const svg = barChart({
      id,
      title,
      groups: rows.map((r) => r.label),
      series: [
        {
          name: "vanilla",
          color: COLORS.vanilla,
          values: rows.map((r) => estimate(r.vanilla, `${r.label} vanilla`)),
        },
        { name: "ADDT", color: COLORS.addt, values: rows.map((r) => estimate(r.addt, `${r.label} ADDT`)) },
      ],
      y: { label: "accuracy", min: 0, max: 1, format: percentTick },
    });
    return { id, title, svg, note: null, caption };
  });
}

/** The sweep with the most distinct eps values (ties: the first in row order); null when none has 2. */
export function chooseSweep(rows: ComparisonRow[]): { key: string; rows: ComparisonRow[] } | null {
  const byKey = new Map<string, ComparisonRow[]>();
  for (const r of rows) {
    const k = sweepKey(r);
    if (k !== null) byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  let best: { key: string; rows: ComparisonRow[]; points: number } | null = null;
  for (const [key, group] of byKey) {
    const points = Math.max(
      ...defensesOf(group).map((d) => new Set(group.filter((r) => r.defense === d).map((r) => r.eps)).size),
    );
    if (points >= 2 && (best === null || points > best.points)) best = { key, rows: group, points };
  }
  return best && { key: best.key, rows: best.rows };
}

/** (b) Accuracy vs eps: vanilla and ADDT lines with interval bands, per defense. */
export function epsPlot(report: MainReport): Plot {
  const id = "plot-eps";
  const caption = "Accuracy as the attack budget grows, for attack settings that differ only in eps; " +
    "shaded bands are 95% Wilson intervals.";
  const sweep = chooseSweep(report.rows);
  if (sweep === null) {
    return {
      id,
      title: "Accuracy vs eps",
      svg: null,
      note: "Accuracy vs eps: skipped, fewer than 2 eps values were evaluated for any attack setting " +
        "(add an eps sweep to the run to get this plot).",
      caption,
    };
  }
  const first = sweep.rows[0];
  const name = sweep.key.split("|").slice(3).join("|");
  const series: LineSeries[] = [];
  defensesOf(sweep.rows).forEach((defense, i) => {
    const byEps = new Map<number, ComparisonRow>();
    for (const r of sweep.rows) if (r.defense === defense && !byEps.has(r.eps!)) byEps.set(r.eps!, r);
    if (byEps.size < 2) return;
    const rows = [...byEps.values()].sort((a, b) => a.eps! - b.eps!);
    for (const model of ["vanilla", "addt"] as const) {
      const label = model === "vanilla" ? "vanilla" : "ADDT";
      series.push({
        name: `${defense} ${label}`,
        color: COLORS[model],
        dash: DASHES[i % DASHES.length] || undefined,
        points: rows.map((r) => ({ x: r.eps!, ...estimate(r[model], `${r.label} ${label}`) })),
      });
    }
  });
  const title = `Accuracy vs eps: ${name}`;
  const svg = lineChart({
    id,
    title,
    series,
    x: { label: `eps (${NORM_LABELS[first.norm!] ?? first.norm})` },
    y: { label: "accuracy", min: 0, max: 1, format: percentTick },
  });
  return { id, title, svg, note: null, caption };
}

export interface StochasticPair {
  dwBoth: ComparisonRow;
  fresh: ComparisonRow | null;
}

/**
 * Each DW_Both row with the fresh-noise row of the same defense, attack, norm, eps and iterations; among
 * several, the one with the same EOT, else the one with the most EOT draws (the strongest stochastic attack).
 */
export function stochasticPairs(rows: ComparisonRow[]): StochasticPair[] {
  return rows.filter((r) => r.mode === "dw_both").map((dw) => {
    const candidates = rows.filter((r) =>
      r.mode === "fresh" && r.defense === dw.defense && r.attack === dw.attack && r.norm === dw.norm &&
      sameEps(r.eps, dw.eps) && stepsOf(r) === stepsOf(dw)
    );
    const same = candidates.find((r) => eotOf(r) === eotOf(dw));
    const fresh = same ?? candidates.sort((a, b) => eotOf(b) - eotOf(a))[0] ?? null;
    return { dwBoth: dw, fresh };
  });
}

/** (c) Stochastic (fresh noise) vs DW_Both, for the vanilla and the ADDT model. */
export function stochasticPlot(report: MainReport): Plot {
  const id = "plot-stochastic";
  const title = "Stochastic (fresh noise) vs DW_Both";
  const caption = "Each DW_Both attack (the attacker knows the purifier's noise) next to the same attack " +
    "with fresh noise, for both models; 95% Wilson intervals.";
  const pairs = stochasticPairs(report.rows);
  if (pairs.length === 0) {
    return {
      id,
      title,
      svg: null,
      note: "Stochastic vs DW_Both: skipped, the run has no DW_Both attack (the full protocol adds one).",
      caption,
    };
  }
  const unpaired = pairs.filter((p) => p.fresh === null).map((p) => `${p.dwBoth.defense} ${p.dwBoth.label}`);
  const groups = pairs.map(({ dwBoth: r }) =>
    `${r.defense} ${r.label.split(" ")[0]} ${NORM_LABELS[r.norm ?? ""] ?? r.norm} ${r.eps}`
  );
  const value = (r: ComparisonRow | null, model: "vanilla" | "addt", what: string) =>
    r ? estimate(r[model], `${r.defense} ${r.label} ${what}`) : null;
  const svg = barChart({
    id,
    title,
    groups,
    series: [
      {
        name: "vanilla, fresh",
        color: COLORS.vanilla,
        values: pairs.map((p) => value(p.fresh, "vanilla", "vanilla")),
      },
      {
        name: "vanilla, DW_Both",
        color: COLORS.vanillaLight,
        values: pairs.map((p) => value(p.dwBoth, "vanilla", "vanilla")),
      },
      { name: "ADDT, fresh", color: COLORS.addt, values: pairs.map((p) => value(p.fresh, "addt", "ADDT")) },
      {
        name: "ADDT, DW_Both",
        color: COLORS.addtLight,
        values: pairs.map((p) => value(p.dwBoth, "addt", "ADDT")),
      },
    ],
    y: { label: "accuracy", min: 0, max: 1, format: percentTick },
  });
  const note = unpaired.length
    ? `No fresh-noise row with the same attack, norm, eps and iterations for: ${unpaired.join("; ")}.`
    : null;
  return { id, title, svg, note, caption };
}

/** A trailing moving average over `window` points. */
export function movingAverage(values: number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  values.forEach((v, i) => {
    sum += v;
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  });
  return out;
}

/** Most points drawn per line: more adds bytes, not information. */
const MAX_LINE_POINTS = 1500;

/** (d) The fine-tuning loss curve (raw and smoothed); log scale when it spans a decade or more. */
export function lossPlot(report: MainReport): Plot {
  const id = "plot-loss";
  const title = "ADDT fine-tuning loss";
  const curve = report.lossCurve.filter((p) => Number.isFinite(p.step) && Number.isFinite(p.loss));
  const dropped = report.lossCurve.length - curve.length;
  const caption = "Training loss of the ADDT fine-tuning per logged step, with a moving average.";
  if (curve.length === 0) {
    return {
      id,
      title,
      svg: null,
      note: report.lossCurve.length
        ? `No finite loss values in the fine-tuning curve (${dropped} non-finite).`
        : "No fine-tuning loss curve: this run did not fine-tune (e.g. it loaded existing ADDT weights).",
      caption,
    };
  }
  const losses = curve.map((p) => p.loss);
  const min = Math.min(...losses), max = Math.max(...losses);
  const log = min > 0 && max / min >= 10;
  const stride = Math.ceil(curve.length / MAX_LINE_POINTS);
  const thin = <T>(a: T[]) => a.filter((_, i) => i % stride === 0 || i === a.length - 1);
  const series: LineSeries[] = [{
    name: "loss",
    color: COLORS.loss,
    points: thin(curve.map((p) => ({ x: p.step, value: p.loss, title: `step ${p.step}: ${p.loss}` }))),
    markers: curve.length <= 60,
    strokeWidth: 1.2,
    opacity: curve.length >= 10 ? 0.55 : 1,
  }];
  if (curve.length >= 10) {
    const smooth = movingAverage(losses, Math.max(2, Math.round(curve.length / 10)));
    series.push({
      name: "moving average",
      color: "#1b5e20",
      points: thin(curve.map((p, i) => ({ x: p.step, value: smooth[i] }))),
      markers: false,
    });
  }
  const svg = lineChart({
    id,
    title,
    series,
    x: { label: "step" },
    y: { label: log ? "loss (log scale)" : "loss", log },
  });
  const note = dropped ? `${dropped} non-finite loss values left out.` : null;
  return { id, title, svg, note, caption };
}

/** All plots in the order the report shows them. */
export function mainPlots(report: MainReport): Plot[] {
  return [...robustPlots(report), epsPlot(report), stochasticPlot(report), lossPlot(report)];
}

/** A one-line summary of the loss curve for text reports. */
export function lossSummary(report: MainReport): string | null {
  const c = report.lossCurve.filter((p) => Number.isFinite(p.loss));
  if (c.length === 0) return null;
  const tail = c.slice(-Math.max(1, Math.round(c.length / 10)));
  const mean = tail.reduce((s, p) => s + p.loss, 0) / tail.length;
  return `${c.length} logged steps (${c[0].step} to ${c[c.length - 1].step}); first loss ${
    c[0].loss.toPrecision(4)
  }, mean of the last ${tail.length}: ${mean.toPrecision(4)}.`;
}
