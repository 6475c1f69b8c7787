/**
 * RESULTS.md's tables for issues 4 and 5, computed from the rows of tasks/results.sh (one `addt eval` each).
 *
 *   deno run -A tasks/results_tables.ts --collect out        # copy out/<row>/{progress.json,report.*} to results/<row>/
 *   deno run -A tasks/results_tables.ts                      # print the tables (from results/<row>/progress.json)
 *   deno run -A tasks/results_tables.ts --write RESULTS.md   # replace the text between RESULTS.md's markers
 *
 * The tables count from each row's progress.json (per-image results of every finished batch), so a row still
 * running shows the images it has finished, and its n says so. Vanilla and ADDT rows share their purifier
 * noise image by image (tasks/results.sh), so their comparison is paired: over the images both have finished,
 * with the discordant pairs and an exact McNemar test.
 */
import { evalConfigFromArgs } from "../src/cli/eval.ts";
import { attackLabel, type AttackSpec, type EvalConfig } from "../src/eval/config.ts";
import { budgetsOf } from "../src/eval/protocol.ts";
import type { EvalProgress } from "../src/eval/resume.ts";
import {
  type AccuracyStat,
  accuracyStat,
  countsOf,
  formatStat,
  type SampleFlags,
} from "../src/eval/stats.ts";

export const BEGIN = "<!-- results_tables: begin -->";
export const END = "<!-- results_tables: end -->";

/** One queue row as far as it has run. */
export interface RowData {
  name: string;
  config: EvalConfig;
  /** Images finished so far. */
  images: number;
  clean: SampleFlags;
  attacks: { spec: AttackSpec; flags: SampleFlags; seconds: number }[];
  undefended: { norm: string; eps: number; flags: SampleFlags }[];
  finished: boolean;
}

/**
 * name -> eval arguments, from `tasks/results.sh --list` (the queue's single source of truth); `env` reaches
 * the script (ROOT, BATCH). Throws on a line it cannot read or a row listed twice.
 */
export async function queueRows(
  repo: string,
  env: Record<string, string> = {},
): Promise<Map<string, string[]>> {
  const out = await new Deno.Command("bash", {
    args: ["tasks/results.sh", "--list"],
    cwd: repo,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`tasks/results.sh --list exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
  const map = new Map<string, string[]>();
  for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
    const m = /^([a-z0-9-]+): deno task addt eval (.*)$/.exec(line);
    if (!m) throw new Error(`unexpected tasks/results.sh --list line: ${line}`);
    if (map.has(m[1])) throw new Error(`row ${m[1]} listed twice`);
    map.set(m[1], m[2].split(/\s+/));
  }
  return map;
}

const joinFlags = (parts: SampleFlags[]): SampleFlags => ({
  single: parts.flatMap((p) => p.single),
  mean: parts.flatMap((p) => p.mean),
  worst: parts.flatMap((p) => p.worst),
});

/** A row's results from its progress file (pure). */
export function rowFromProgress(
  name: string,
  config: EvalConfig,
  p: EvalProgress,
  finished: boolean,
): RowData {
  const b = p.batches;
  return {
    name,
    config,
    images: b.reduce((s, r) => s + r.count, 0),
    clean: joinFlags(b.map((r) => r.clean)),
    attacks: config.attacks.map((spec, i) => ({
      spec,
      flags: joinFlags(b.map((r) => r.rows[i].flags)),
      seconds: b.reduce((s, r) => s + r.rows[i].seconds, 0),
    })),
    undefended: budgetsOf(config.attacks).map((u, i) => ({
      ...u,
      flags: joinFlags(b.map((r) => r.undefendedRobust[i] ?? { single: [], mean: [], worst: [] })),
    })).filter((u) => u.flags.single.length > 0),
    finished,
  };
}

/** Every queue row that has a progress file under `root`. */
export async function readRows(repo: string, root: string): Promise<RowData[]> {
  const rows: RowData[] = [];
  for (const [name, args] of await queueRows(repo)) {
    const dir = `${root}/${name}`;
    let progress: EvalProgress;
    try {
      progress = JSON.parse(await Deno.readTextFile(`${dir}/progress.json`));
    } catch {
      continue;
    }
    const finished = await Deno.stat(`${dir}/report.json`).then(() => true, () => false);
    rows.push(rowFromProgress(name, await evalConfigFromArgs(args), progress, finished));
  }
  return rows;
}

const cell = (s: AccuracyStat) => (s.n > 0 ? formatStat(s) : "");
const nOf = (
  r: RowData,
  images = r.images,
) => (images >= r.config.n ? `${images}` : `${images} of ${r.config.n}`);
const defenseName = (c: EvalConfig) => (c.defense === "dp_ddpm" ? "DP_DDPM" : "DP_DDIM");

function table(head: string[], lines: string[][]): string {
  const all = [head, ...lines];
  const width = head.map((_, i) => Math.max(3, ...all.map((l) => l[i].length)));
  const fmt = (l: string[]) => `| ${l.map((c, i) => c.padEnd(width[i])).join(" | ")} |`;
  return [fmt(head), `| ${width.map((w) => "-".repeat(w)).join(" | ")} |`, ...lines.map(fmt)].join("\n");
}

/** Issue 4: each vanilla row's settings counted three ways, per defense, plus the undefended sanity rows. */
export function vanillaTable(rows: RowData[], defense: "dp_ddpm" | "dp_ddim"): string {
  const mine = rows.filter((r) => r.name.startsWith("v-") && r.config.defense === defense);
  if (mine.length === 0) return `(no ${defense} rows yet)`;
  const lines: string[][] = [];
  const widest = mine.reduce((a, b) => (b.images > a.images ? b : a));
  const c = countsOf(widest.clean);
  lines.push(["clean", nOf(widest), cell(c.single), cell(c.mean), cell(c.worst), "", widest.name]);
  for (const r of mine) {
    for (const a of r.attacks) {
      const k = countsOf(a.flags);
      const perImage = r.images > 0 ? (a.seconds / r.images).toFixed(1) : "";
      lines.push([
        attackLabel(a.spec),
        nOf(r),
        cell(k.single),
        cell(k.mean),
        cell(k.worst),
        perImage,
        r.name,
      ]);
    }
  }
  const undefended = new Map<string, { label: string; flags: SampleFlags }>();
  for (const r of mine) {
    for (const u of r.undefended) {
      const key = `${u.norm} ${u.eps}`;
      const label = `undefended classifier, PGD-20 ${u.norm === "linf" ? "Linf" : "L2"} ${u.eps}`;
      if ((undefended.get(key)?.flags.single.length ?? -1) < u.flags.single.length) {
        undefended.set(key, { label, flags: u.flags });
      }
    }
  }
  for (const { label, flags } of undefended.values()) {
    lines.push([label, `${flags.single.length}`, cell(countsOf(flags).single), "", "", "", ""]);
  }
  return table([
    "setting",
    "n",
    "fresh eval (paper's protocol)",
    "mean of K",
    "worst of K",
    "s/image (attack + K evals)",
    "row",
  ], lines);
}

/** Two-sided exact McNemar p-value from the discordant pair counts. */
export function mcnemar(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  let tail = 0, term = Math.pow(0.5, n); // C(n, 0) / 2^n
  for (let i = 0; i <= Math.min(b, c); i++) {
    tail += term;
    term = term * (n - i) / (i + 1);
  }
  return Math.min(1, 2 * tail);
}

const pValue = (p: number) => (p < 0.001 ? "< 0.001" : p.toFixed(3));

/** One paired line: the first `n` images of two rows' flags (first fresh evaluation, the paper's protocol). */
function pairedLine(label: string, defense: string, a: number[], b: number[], n: number): string[] {
  const x = a.slice(0, n), y = b.slice(0, n);
  const sx = x.reduce((s, v) => s + v, 0), sy = y.reduce((s, v) => s + v, 0);
  let onlyA = 0, onlyB = 0;
  for (let i = 0; i < n; i++) {
    if (x[i] && !y[i]) onlyA++;
    if (!x[i] && y[i]) onlyB++;
  }
  const change = n > 0 ? (100 * (sy - sx) / n).toFixed(1) : "";
  return [
    defense,
    label,
    `${n}`,
    cell(accuracyStat(sx, n)),
    cell(accuracyStat(sy, n)),
    (sy >= sx ? "+" : "") + change,
    `${onlyA} / ${onlyB}`,
    n > 0 ? pValue(mcnemar(onlyA, onlyB)) : "",
  ];
}

/**
 * Rows compared pair by pair, setting by setting, over the images both rows of a pair have finished: `pairs`
 * holds [base row, other row] names (pairs with a missing row are skipped). The clean line comes from each
 * defense's first pair.
 */
export function comparisonTable(
  rows: RowData[],
  pairs: [string, string][],
  baseWhat: string,
  what: string,
): string {
  const byName = new Map(rows.map((r) => [r.name, r]));
  const lines: string[][] = [];
  const cleanDone = new Set<string>();
  for (const [baseName, otherName] of pairs) {
    const v = byName.get(baseName), r = byName.get(otherName);
    if (!v || !r) continue;
    const n = Math.min(r.images, v.images);
    const defense = defenseName(r.config);
    if (!cleanDone.has(defense)) {
      cleanDone.add(defense);
      lines.push(pairedLine("clean", defense, v.clean.single, r.clean.single, n));
    }
    r.attacks.forEach((a, i) => {
      lines.push(pairedLine(attackLabel(a.spec), defense, v.attacks[i].flags.single, a.flags.single, n));
    });
  }
  if (lines.length === 0) return `(no ${what} rows yet)`;
  return table(
    [
      "defense",
      "setting",
      "n (paired)",
      baseWhat,
      what,
      "change (points)",
      `only ${baseWhat} / only ${what}`,
      "McNemar p",
    ],
    lines,
  );
}

/**
 * Issue 5: rows `prefix-*` against their vanilla rows `v-*` (the EOT-1 rows first, so the clean line counts
 * the most images).
 */
export const pairedTable = (rows: RowData[], prefix: string, what: string): string =>
  comparisonTable(
    rows,
    rows.filter((r) => r.name.startsWith(`${prefix}-`)).map((r) => [
      `v-${r.name.slice(prefix.length + 1)}`,
      r.name,
    ]),
    "vanilla",
    what,
  );

/**
 * Issue 4's weak-gradient check: BPDA+EOT against the exact gradient at the same PGD-20 EOT-10 Linf settings,
 * on the same images. A BPDA figure below the exact one would mean a broken exact gradient.
 */
export const bpdaTable = (rows: RowData[]): string =>
  comparisonTable(
    rows,
    [["v-ddpm-eot10-linf", "v-ddpm-bpda"], ["v-ddim-eot10-linf", "v-ddim-bpda"]],
    "exact",
    "BPDA",
  );

/** Where each row stands. */
export function statusTable(rows: RowData[], queue: Map<string, string[]>): string {
  const byName = new Map(rows.map((r) => [r.name, r]));
  const lines = [...queue.keys()].map((name) => {
    const r = byName.get(name);
    const state = !r ? "not started" : r.finished ? "done" : "partial";
    const seconds = r ? r.attacks.reduce((s, a) => s + a.seconds, 0) : 0;
    return [name, r ? nOf(r) : "0", state, r ? (seconds / 3600).toFixed(2) : ""];
  });
  return table(["row", "images", "state", "attack hours so far"], lines);
}

export function allTables(rows: RowData[], queue: Map<string, string[]>): string {
  return [
    "### Vanilla DP_DDPM (issue 4)",
    vanillaTable(rows, "dp_ddpm"),
    "### Vanilla DP_DDIM (issue 4)",
    vanillaTable(rows, "dp_ddim"),
    "### Vanilla vs ADDT, paired (issue 5)",
    pairedTable(rows, "a", "ADDT"),
    "### Vanilla vs clean fine-tune, paired (issue 5's ablation)",
    pairedTable(rows, "c", "clean-ft"),
    "### Exact gradient vs BPDA, paired (issue 4)",
    bpdaTable(rows),
    "### The queue",
    statusTable(rows, queue),
  ].join("\n\n");
}

/** Copy each row's progress and report from `from` into results/ (atomically per file). */
async function collect(repo: string, from: string): Promise<void> {
  for (const name of (await queueRows(repo)).keys()) {
    for (const file of ["progress.json", "report.json", "report.md"]) {
      let text: string;
      try {
        text = await Deno.readTextFile(`${from}/${name}/${file}`);
      } catch {
        continue;
      }
      await Deno.mkdir(`${repo}/results/${name}`, { recursive: true });
      const dest = `${repo}/results/${name}/${file}`;
      await Deno.writeTextFile(`${dest}.tmp`, text);
      await Deno.rename(`${dest}.tmp`, dest);
    }
  }
}

if (import.meta.main) {
  const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const args = [...Deno.args];
  const at = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const from = at("--collect");
  if (from) await collect(repo, from);
  const rows = await readRows(repo, at("--root") ?? `${repo}/results`);
  const text = allTables(rows, await queueRows(repo));
  const target = at("--write");
  if (target) {
    const doc = await Deno.readTextFile(target).catch(() => null);
    if (doc === null) {
      console.error(`results_tables: cannot read ${target}`);
      Deno.exit(2);
    }
    const [i, j] = [doc.indexOf(BEGIN), doc.indexOf(END)];
    if (i < 0 || j < i) {
      console.error(`${target} has no ${BEGIN} ... ${END} markers`);
      Deno.exit(2);
    }
    const updated = doc.slice(0, i + BEGIN.length) + "\n\n" + text + "\n\n" + doc.slice(j);
    await Deno.writeTextFile(`${target}.tmp`, updated);
    await Deno.rename(`${target}.tmp`, target);
    console.log(`updated ${target}`);
  } else console.log(text);
}
