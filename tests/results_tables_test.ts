/**
 * tasks/results_tables.ts, which turns the queue's progress files into RESULTS.md's tables: counts, paired
 * comparison over the images both rows have finished, the McNemar test, and the marker rewrite.
 */
import { evalConfigFromArgs } from "../src/cli/eval.ts";
import type { EvalProgress } from "../src/eval/resume.ts";
import type { SampleFlags } from "../src/eval/stats.ts";
import {
  BEGIN,
  bpdaTable,
  END,
  mcnemar,
  pairedTable,
  queueRows,
  rowFromProgress,
  vanillaTable,
} from "../tasks/results_tables.ts";
import { check, repoRoot } from "./util.ts";

const flags = (bits: number[]): SampleFlags => ({ single: bits, mean: bits, worst: bits });

/** A progress file of batches of the given clean and per-attack bits. */
function progress(batches: { clean: number[]; rows: number[][] }[]): EvalProgress {
  return {
    format: "addt-eval-progress/1",
    key: "test",
    started: "2026-11-29T00:00:00Z",
    gpuHighWaterBytes: 0,
    batches: batches.map((b) => ({
      count: b.clean.length,
      clean: flags(b.clean),
      rows: b.rows.map((r) => ({ flags: flags(r), seconds: 2 * r.length })),
      undefendedClean: flags(b.clean),
      undefendedRobust: [flags(b.clean.map(() => 0))],
      wallSeconds: 1,
    })),
  };
}

Deno.test("results tables: McNemar exact test", () => {
  check(mcnemar(0, 0) === 1 && mcnemar(3, 3) === 1, "no evidence gives p = 1");
  check(Math.abs(mcnemar(0, 5) - 2 / 32) < 1e-15, `mcnemar(0, 5) = ${mcnemar(0, 5)}`);
  // b = 1, c = 9: 2 * (1 + 10) / 1024
  check(Math.abs(mcnemar(1, 9) - 22 / 1024) < 1e-15, `mcnemar(1, 9) = ${mcnemar(1, 9)}`);
  check(mcnemar(9, 1) === mcnemar(1, 9), "symmetric");
});

Deno.test("results tables: counts per setting and a paired comparison over the common images", async () => {
  const queue = await queueRows(repoRoot);
  const config = async (name: string) => await evalConfigFromArgs(queue.get(name)!);
  const v = rowFromProgress(
    "v-ddim-eot1",
    await config("v-ddim-eot1"),
    progress([
      { clean: [1, 1, 1, 0], rows: [[1, 0, 0, 0], [0, 0, 0, 0]] },
      { clean: [1, 1, 1, 1], rows: [[1, 1, 0, 0], [1, 0, 0, 0]] },
    ]),
    false,
  );
  // the ADDT row has finished one batch only: the comparison uses its 4 images
  const a = rowFromProgress(
    "a-ddim-eot1",
    await config("a-ddim-eot1"),
    progress([{ clean: [1, 1, 1, 1], rows: [[1, 1, 1, 0], [0, 0, 0, 0]] }]),
    false,
  );
  check(v.images === 8 && a.images === 4, "image counts");
  const vt = vanillaTable([v], "dp_ddim");
  check(vt.includes("| clean ") && vt.includes("87.5% ["), `clean 7 of 8:\n${vt}`);
  check(vt.includes("8 of 256"), "n says how far the row is");
  check(/PGD-20 EOT-1 Linf 0.3 +\| 8 of 256 \| 37.5%/.test(vt), `fresh 3 of 8:\n${vt}`);
  check(vt.includes("undefended classifier, PGD-20 Linf 0.3 | 8 ") && vt.includes("| 0.0% ["), vt);
  const pt = pairedTable([v, a], "a", "ADDT");
  const line = (label: string) => pt.split("\n").find((l) => l.includes(`| ${label} `))!;
  // clean over the first 4: vanilla 3, ADDT 4, one pair only ADDT right
  check(/\| 4 +\| 75.0% .*\| 100.0% .*\| \+25.0 .*\| 0 \/ 1 +\| 1.000 /.test(line("clean")), line("clean"));
  // fresh: vanilla [1,0,0,0], ADDT [1,1,1,0]: +50 points, 0 / 2, p = 0.5
  check(/\| 25.0% .*\| 75.0% .*\| \+50.0 .*\| 0 \/ 2 +\| 0.500 /.test(line("PGD-20 EOT-1 Linf 0.3")), pt);
  check(line("PGD-20 EOT-1 Linf 0.3 DW_Both").includes("| +0.0 "), pt);
});

Deno.test("results tables: BPDA is paired with the exact-gradient row of the same defense", async () => {
  const queue = await queueRows(repoRoot);
  const row = async (name: string, rows: number[][]) =>
    rowFromProgress(
      name,
      await evalConfigFromArgs(queue.get(name)!),
      progress([{ clean: [1, 1, 1, 1], rows }]),
      false,
    );
  const exact = await row("v-ddpm-eot10-linf", [[0, 0, 1, 0]]);
  const bpda = await row("v-ddpm-bpda", [[1, 1, 1, 0]]);
  const other = await row("v-ddim-eot10-linf", [[0, 0, 0, 0]]); // its BPDA row is missing: skipped
  const t = bpdaTable([exact, bpda, other]);
  const line = t.split("\n").find((l) => l.includes("Linf 0.3 BPDA"))!;
  check(line !== undefined && line.startsWith("| DP_DDPM "), t);
  check(/PGD-20 EOT-10 Linf 0.3 BPDA +\| 4 +\| 25.0% .*\| 75.0% .*\| \+50.0 .*\| 0 \/ 2 /.test(line), t);
  check(!t.includes("DP_DDIM"), `a pair with a missing row is skipped:\n${t}`);
  check(bpdaTable([exact]) === "(no BPDA rows yet)", "no pairs");
});

Deno.test("results tables: --write replaces only the text between the markers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const doc = `${dir}/R.md`;
    await Deno.writeTextFile(doc, `before\n${BEGIN}\nold table\n${END}\nafter\n`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tasks/results_tables.ts", "--root", `${dir}/none`, "--write", doc],
      cwd: repoRoot,
      stdout: "piped",
      stderr: "piped",
    }).output();
    check(out.code === 0, new TextDecoder().decode(out.stderr));
    const text = await Deno.readTextFile(doc);
    check(text.startsWith(`before\n${BEGIN}\n`) && text.endsWith(`${END}\nafter\n`), text);
    check(
      !text.includes("old table") && text.includes("| v-ddpm-eot1 ") && text.includes("not started"),
      text,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
