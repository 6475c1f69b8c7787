/**
 * The attack settings the main job runs and the comparison rows it reports: both models are evaluated
 * with the same EvalConfig (same images, seeds and noise streams), so row i of the vanilla report and row
 * i of the ADDT report are the same attack on the same images, a paired comparison.
 */
import { attackDefaults, type AttackSpec, standardEps } from "../eval/config.ts";
import type { EvalReport } from "../eval/report.ts";
import type { AccuracyStat } from "../eval/stats.ts";
import { formatStat } from "../eval/stats.ts";
import type { AccuracyPoint, ComparisonRow } from "../report/types.ts";
import { type MainConfig, sweepWithStandard } from "./defaults.ts";

/**
 * The main evaluation's attack settings: PGD with fresh noise at every sweep budget (the standard one is
 * the headline "stochastic" row), PGD DW_Both at the standard budget, and with `l2` the same two at the
 * standard L2 budget.
 */
export function mainAttacks(c: MainConfig): AttackSpec[] {
  const pgd = (o: Partial<AttackSpec>) => attackDefaults(c.dataset, { steps: c.steps, eot: c.eot, ...o });
  const linf = standardEps(c.dataset, "linf");
  const specs = sweepWithStandard(c).map((eps) => pgd({ eps, mode: "fresh" }));
  specs.push(pgd({ eps: linf, mode: "dw_both" }));
  if (c.l2) specs.push(pgd({ norm: "l2", mode: "fresh" }), pgd({ norm: "l2", mode: "dw_both" }));
  return specs;
}

/** The headline setting (PGD with fresh noise at the standard Linf budget), also run for the grids. */
export function headlineAttack(c: MainConfig): AttackSpec {
  return attackDefaults(c.dataset, { steps: c.steps, eot: c.eot, mode: "fresh" });
}

/** AutoAttack-rand (APGD-CE then APGD-DLR, EOT 20) at the standard Linf budget, on a subset. */
export function autoAttackSpecs(c: MainConfig): AttackSpec[] {
  return c.autoAttackN > 0 ? [attackDefaults(c.dataset, { attack: "autoattack-rand" })] : [];
}

export const point = (s: AccuracyStat): AccuracyPoint => ({
  acc: s.accuracy,
  lo: s.ci95[0],
  hi: s.ci95[1],
  n: s.n,
});

/** Rows of two reports of the same config (vanilla, ADDT); `withClean` adds the clean row first. */
export function comparisonRows(
  defense: string,
  vanilla: EvalReport,
  addt: EvalReport,
  withClean: boolean,
): ComparisonRow[] {
  if (vanilla.rows.length !== addt.rows.length || vanilla.n !== addt.n) {
    throw new Error(`comparison of ${defense}: the two evaluations ran different settings`);
  }
  const rows: ComparisonRow[] = [];
  if (withClean) {
    rows.push({
      defense,
      label: "clean",
      attack: "clean",
      norm: null,
      eps: null,
      mode: null,
      vanilla: point(vanilla.clean.single),
      addt: point(addt.clean.single),
      vanillaMeanK: point(vanilla.clean.mean),
      addtMeanK: point(addt.clean.mean),
    });
  }
  vanilla.rows.forEach((v, i) => {
    const a = addt.rows[i];
    if (a.label !== v.label) {
      throw new Error(`comparison of ${defense}: row ${i} is ${v.label} vs ${a.label}`);
    }
    rows.push({
      defense,
      label: v.label,
      attack: v.spec.attack,
      norm: v.spec.norm,
      eps: v.spec.eps,
      mode: v.spec.mode,
      vanilla: point(v.counts.single),
      addt: point(a.counts.single),
      vanillaMeanK: point(v.counts.mean),
      addtMeanK: point(a.counts.mean),
    });
  });
  return rows;
}

const pct = (p: AccuracyPoint) =>
  formatStat({ correct: p.acc * p.n, n: p.n, accuracy: p.acc, ci95: [p.lo, p.hi] });

/** The comparison as a Markdown table (printed at the end of the job). */
export function comparisonMarkdown(rows: readonly ComparisonRow[]): string {
  const lines = [
    "| defense | setting | n | vanilla | ADDT | change (points) |",
    "|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.defense} | ${r.label} | ${r.vanilla.n} | ${pct(r.vanilla)} | ${pct(r.addt)} | ` +
      `${(100 * (r.addt.acc - r.vanilla.acc)) >= 0 ? "+" : ""}${
        (100 * (r.addt.acc - r.vanilla.acc)).toFixed(1)
      } |`
    ),
  ];
  return lines.join("\n");
}
