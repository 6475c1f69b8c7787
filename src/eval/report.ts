/**
 * The evaluation report: every accuracy counted three ways with its 95% Wilson interval and sample count,
 * the run's provenance (config, seed, git commit, adapter, wall time, memory high-water mark), the sanity
 * checks, as JSON and as a Markdown table.
 *
 * Sanity checks (signs of a broken gradient or a broken evaluation):
 * - the undefended classifier under PGD-20 at each budget in use should be near 0% robust;
 * - an exact-gradient attack should not leave more accuracy than the same attack with BPDA's gradient;
 * - accuracy should not rise as eps grows (same attack otherwise).
 */
import type { AttackSpec, EvalConfig } from "./config.ts";
import { attackLabel, standardEps, stepSize } from "./config.ts";
import type { Norm } from "../attack/projection.ts";
import { type AccuracyStat, type Counts, countsOf, formatStat, type SampleFlags } from "./stats.ts";

export const REPORT_FORMAT = "addt-eval/1";

/** Undefended robust accuracy above this is reported as suspicious. */
export const UNDEFENDED_WARN = 0.1;

export interface RowReport {
  label: string;
  spec: AttackSpec & { alphaUsed: number };
  counts: Counts;
  seconds: number;
  secondsPerImage: number;
}

export interface EvalReport {
  format: string;
  config: EvalConfig;
  seed: number;
  commit: string;
  adapter: { description: string; isSoftware: boolean; backend: string };
  started: string;
  wallSeconds: number;
  /** Peak bytes of GPU buffers handed out during the evaluation. */
  gpuHighWaterBytes: number;
  defense: { name: string; tStar: number | null; nfe: number | null; modelCallsPerPurification: number };
  n: number;
  k: number;
  clean: Counts;
  rows: RowReport[];
  sanity: {
    undefendedClean: AccuracyStat;
    undefendedRobust: { norm: string; eps: number; robust: AccuracyStat }[];
    warnings: string[];
  };
}

export interface EvalResults {
  clean: SampleFlags;
  rows: { flags: SampleFlags; seconds: number }[];
  undefendedClean: SampleFlags;
  undefendedRobust: { norm: string; eps: number; flags: SampleFlags }[];
}

export interface ReportMeta {
  commit: string;
  adapter: EvalReport["adapter"];
  started: string;
  wallSeconds: number;
  gpuHighWaterBytes: number;
  defense: EvalReport["defense"];
}

export function buildReport(config: EvalConfig, results: EvalResults, meta: ReportMeta): EvalReport {
  const n = results.clean.single.length;
  const rows: RowReport[] = config.attacks.map((spec, i) => ({
    label: attackLabel(spec),
    spec: { ...spec, alphaUsed: stepSize(spec) },
    counts: countsOf(results.rows[i].flags),
    seconds: results.rows[i].seconds,
    secondsPerImage: results.rows[i].seconds / Math.max(n, 1),
  }));
  const undefendedRobust = results.undefendedRobust.map((u) => ({
    norm: u.norm,
    eps: u.eps,
    robust: countsOf(u.flags).single,
  }));
  const partial: Omit<EvalReport, "sanity"> = {
    format: REPORT_FORMAT,
    config,
    seed: config.seed,
    ...meta,
    n,
    k: config.k,
    clean: countsOf(results.clean),
    rows,
  };
  const undefendedClean = countsOf(results.undefendedClean).single;
  return {
    ...partial,
    sanity: {
      undefendedClean,
      undefendedRobust,
      warnings: sanityWarnings(rows, undefendedRobust, (norm) => standardEps(config.dataset, norm)),
    },
  };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/** What an attack setting is, without one field: rows equal under `keyWithout` differ only there. */
function keyWithout(spec: AttackSpec, field: keyof AttackSpec | "eps+alpha"): string {
  const s: Record<string, unknown> = { ...spec };
  if (field === "eps+alpha") {
    delete s.eps;
    delete s.alpha;
    delete s.alphaUsed; // derived from eps
  } else delete s[field];
  return JSON.stringify(Object.keys(s).sort().map((k) => [k, s[k]]));
}

export function sanityWarnings(
  rows: readonly RowReport[],
  undefendedRobust: readonly { norm: string; eps: number; robust: AccuracyStat }[],
  /** The dataset's standard budget per norm: below it an undefended classifier may rightly survive. */
  standard: (norm: Norm) => number = () => 0,
): string[] {
  const warnings: string[] = [];
  for (const u of undefendedRobust) {
    if (u.eps > 0 && u.eps >= standard(u.norm as Norm) && u.robust.accuracy > UNDEFENDED_WARN) {
      warnings.push(
        `the undefended classifier keeps ${pct(u.robust.accuracy)} under PGD-20 ${u.norm} eps ${u.eps} ` +
          `(expected near 0): the attack or the budget is too weak to judge the defense`,
      );
    }
  }
  // exact vs BPDA on otherwise identical settings
  for (const exact of rows.filter((r) => r.spec.gradient === "exact")) {
    const key = keyWithout(exact.spec, "gradient");
    for (
      const bpda of rows.filter((r) => r.spec.gradient === "bpda" && keyWithout(r.spec, "gradient") === key)
    ) {
      if (exact.counts.single.accuracy > bpda.counts.single.accuracy) {
        warnings.push(
          `"${exact.label}" (exact gradient) leaves ${formatStat(exact.counts.single)}, more than BPDA's ` +
            `${formatStat(bpda.counts.single)}: the exact gradient may be broken`,
        );
      }
    }
  }
  // accuracy should fall as eps grows
  const groups = new Map<string, RowReport[]>();
  for (const r of rows) {
    groups.set(keyWithout(r.spec, "eps+alpha"), [...(groups.get(keyWithout(r.spec, "eps+alpha")) ?? []), r]);
  }
  for (const group of groups.values()) {
    const sorted = [...group].sort((a, b) => a.spec.eps - b.spec.eps);
    for (let i = 1; i < sorted.length; i++) {
      const [lo, hi] = [sorted[i - 1], sorted[i]];
      if (hi.spec.eps > lo.spec.eps && hi.counts.single.accuracy > lo.counts.single.accuracy) {
        warnings.push(
          `accuracy rises from ${formatStat(lo.counts.single)} at eps ${lo.spec.eps} to ` +
            `${
              formatStat(hi.counts.single)
            } at eps ${hi.spec.eps} ("${hi.label}"): a sign of a broken gradient`,
        );
      }
    }
  }
  return warnings;
}

const num = (v: number) => String(+v.toPrecision(4));

/** The report as Markdown: provenance, the accuracy table, the sanity checks. */
export function reportMarkdown(r: EvalReport): string {
  const d = r.defense;
  const lines = [
    `## Robust accuracy: ${d.name}${d.tStar !== null ? ` (t* = ${d.tStar}, NFE ${d.nfe})` : ""}`,
    "",
    `${r.n} test images of ${r.config.dataset} from #${r.config.offset}, K = ${r.k} evaluations per image, ` +
    `seed ${r.seed}, commit ${r.commit}, ${r.adapter.description}${
      r.adapter.isSoftware ? " (software)" : ""
    }, ` +
    `${num(r.wallSeconds)} s, GPU high-water ${(r.gpuHighWaterBytes / 2 ** 20).toFixed(1)} MiB.`,
    "",
    "Accuracies with 95% Wilson intervals. *Fresh eval*: the final image purified once more with fresh randomness " +
    "(the fixed parts reused in DW settings); *mean of K*: per-image mean over K evaluations; *worst of K*: right in " +
    "all K.",
    "",
    "| setting | norm | eps | alpha | steps | EOT | noise | gradient | fresh eval | mean of K | worst of K | s/image |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    `| clean | | | | | | fresh | | ${formatStat(r.clean.single)} | ${formatStat(r.clean.mean)} | ` +
    `${formatStat(r.clean.worst)} | |`,
    ...r.rows.map((row) => {
      const s = row.spec;
      return `| ${row.label} | ${s.norm} | ${num(s.eps)} | ${
        num(s.alphaUsed)
      } | ${s.steps} | ${s.eot} | ${s.mode} | ` +
        `${s.gradient} | ${formatStat(row.counts.single)} | ${formatStat(row.counts.mean)} | ` +
        `${formatStat(row.counts.worst)} | ${num(row.secondsPerImage)} |`;
    }),
    "",
    `Sanity: the undefended classifier has clean accuracy ${formatStat(r.sanity.undefendedClean)}` +
    (r.sanity.undefendedRobust.length
      ? `; under PGD-20: ${
        r.sanity.undefendedRobust.map((u) => `${u.norm} eps ${num(u.eps)}: ${formatStat(u.robust)}`).join(
          "; ",
        )
      }.`
      : "."),
    "",
    ...(r.sanity.warnings.length ? r.sanity.warnings.map((w) => `- WARNING: ${w}`) : ["No sanity warnings."]),
    "",
  ];
  return lines.join("\n");
}
