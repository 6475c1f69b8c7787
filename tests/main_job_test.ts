/**
 * The main job (`addt` with no subcommand) end to end on tiny run folders written here (a tiny UNet and
 * CNN on real MNIST test images), as a user runs it: a subprocess, its exit code, stdout and the files.
 * The ADDT folder holds the vanilla weights, so a correctly paired evaluation (same images, seeds and
 * noise streams for both models) must give identical numbers in every row and identical purified grids.
 */
import { check, freshSeed, runAddt, testGpu } from "./util.ts";
import { writeTinyRunFolders } from "./tiny_runs.ts";
import { mainConfigFromFlags } from "../src/cli/main_job.ts";
import { mainDefaults, sweepWithStandard } from "../src/main/defaults.ts";
import { comparisonRows, mainAttacks } from "../src/main/compare.ts";
import { parseLossCurve } from "../src/main/loss_curve.ts";
import type { EvalReport } from "../src/eval/report.ts";
import type { MainReport } from "../src/report/types.ts";

const gpu = await testGpu();

const addt = runAddt;

/** Run folders cls/, ddpm/ and addt/ (the same UNet weights, plus a short train.jsonl) under dir. */
async function tinyRuns(dir: string, seed: number): Promise<void> {
  await writeTinyRunFolders(gpu, dir, seed, { ddpms: ["ddpm", "addt"] });
  const log = [{ step: 25, loss: 0.5 }, { step: 50, loss: 0.25 }, { step: 60, test_acc: 0.9 }];
  await Deno.writeTextFile(`${dir}/addt/train.jsonl`, log.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

Deno.test("main job: tiny run folders -> report.json/md/html with every row kind and the 4 grids, paired", async () => {
  const dir = await Deno.makeTempDir();
  const seed = freshSeed() % 100000;
  try {
    await tinyRuns(dir, seed);
    const out = `${dir}/out`;
    const r = await addt([
      ...["--classifier", `${dir}/cls`, "--ddpm", `${dir}/ddpm`, "--addt", `${dir}/addt`, "--out", out],
      ...["--t-star", "20", "--nfe", "2", "--n", "4", "--steps", "1", "--k", "2", "--batch-size", "4"],
      ...["--seed", String(seed)],
    ]);
    const ctx = `(seed ${seed}, exit ${r.code})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    check(r.code === 0, `the main job failed ${ctx}`);
    // settings printed at start, progress with an ETA, the table and the paths at the end
    check(/nfe: 2/.test(r.stderr) && /ETA/.test(r.stderr) && /estimated cost/.test(r.stderr), ctx);
    check(/\| DP_DDPM \| clean \|/.test(r.stdout) && r.stdout.includes(`${out}/report.html`), ctx);
    for (const f of ["report.json", "report.md", "report.html"]) {
      check((await Deno.stat(`${out}/${f}`)).size > 0, `${f} missing ${ctx}`);
    }
    const report: MainReport = JSON.parse(await Deno.readTextFile(`${out}/report.json`));
    check(report.format === "addt-main/1" && report.seed === seed, "report header");
    // the four row kinds: clean, PGD with fresh noise at the standard eps, DW_Both, the eps sweep
    const rows = report.rows;
    const kinds = {
      clean: rows.filter((x) => x.attack === "clean"),
      fresh: rows.filter((x) => x.attack === "pgd" && x.mode === "fresh" && x.eps === 0.3),
      dwBoth: rows.filter((x) => x.mode === "dw_both" && x.eps === 0.3),
      sweep: rows.filter((x) => x.attack === "pgd" && x.mode === "fresh"),
    };
    check(
      kinds.clean.length === 1 && kinds.fresh.length === 1 && kinds.dwBoth.length === 1,
      `row kinds: ${rows.map((x) => x.label).join("; ")}`,
    );
    check(
      JSON.stringify(kinds.sweep.map((x) => x.eps)) === "[0.1,0.2,0.3]",
      `sweep ${kinds.sweep.map((x) => x.eps)}`,
    );
    for (const row of rows) {
      for (const p of [row.vanilla, row.addt]) {
        check(
          p.n === 4 && p.lo <= p.acc && p.acc <= p.hi && p.lo >= 0 && p.hi <= 1,
          `${row.label}: ${JSON.stringify(p)}`,
        );
      }
      // the ADDT folder holds the vanilla weights: a paired evaluation must agree exactly
      check(
        row.vanilla.acc === row.addt.acc && row.vanillaMeanK?.acc === row.addtMeanK?.acc,
        `${row.label}: vanilla ${row.vanilla.acc} vs ADDT ${row.addt.acc} on the same weights (seed ${seed})`,
      );
    }
    // the rows are the evaluation reports' numbers
    const vanillaEval = report.evals.find((e) => e.model === "vanilla")!.report as EvalReport;
    check(report.evals.length === 2 && vanillaEval.n === 4, `evals: ${report.evals.length}`);
    check(kinds.clean[0].vanilla.acc === vanillaEval.clean.single.accuracy, "clean row vs its report");
    check(
      JSON.stringify(report.lossCurve) ===
        JSON.stringify([{ step: 25, loss: 0.5 }, { step: 50, loss: 0.25 }]),
      `loss curve ${JSON.stringify(report.lossCurve)}`,
    );
    check(report.notes.some((n) => /shipped ADDT weights/.test(n)), `notes: ${report.notes}`);
    check(report.timings.length >= 3 && report.wallSeconds > 0, "timings");
    // four PNGs; the purified grids are byte-identical (same weights, same noise)
    const files = report.images.map((g) => g.file);
    check(files.length === 4, `images: ${files}`);
    const bytes: Uint8Array[] = [];
    for (const f of files) {
      const b = await Deno.readFile(`${out}/${f}`);
      check(b.length > 8 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47, `${f} is not a PNG`);
      bytes.push(b);
    }
    check(
      bytes[2].length === bytes[3].length && bytes[2].every((v, i) => v === bytes[3][i]),
      "purified grids differ",
    );
    check(
      !bytes[0].every((v, i) => v === bytes[1][i]),
      `the adversarial grid equals the clean one (seed ${seed})`,
    );
    const html = await Deno.readTextFile(`${out}/report.html`);
    check(
      html.includes("data:image/png;base64,") && html.includes("<svg"),
      "report.html embeds images and plots",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main job: --finetune-steps fine-tunes the vanilla DDPM with ADDT into <out>/addt and evaluates that; a rerun continues it", async () => {
  const dir = await Deno.makeTempDir();
  const seed = freshSeed() % 100000;
  try {
    await tinyRuns(dir, seed);
    const out = `${dir}/out`;
    const args = [
      ...[
        "--classifier",
        `${dir}/cls`,
        "--ddpm",
        `${dir}/ddpm`,
        "--addt",
        `${dir}/nonexistent`,
        "--out",
        out,
      ],
      ...[
        "--finetune-steps",
        "2",
        "--finetune-batch-size",
        "4",
        "--t-star",
        "20",
        "--nfe",
        "1",
        "--n",
        "2",
        "--steps",
        "1",
        "--k",
        "1",
      ],
      ...["--batch-size", "2", "--seed", String(seed)],
    ];
    for (const attempt of [1, 2]) {
      const r = await addt(args);
      const ctx =
        `(run ${attempt}, seed ${seed}, exit ${r.code})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
      check(r.code === 0, `the main job with a fine-tune failed ${ctx}`);
      const report: MainReport = JSON.parse(await Deno.readTextFile(`${out}/report.json`));
      check(
        report.models.addt === `${out}/addt/ema.safetensors`,
        `ADDT weights ${report.models.addt} ${ctx}`,
      );
      check(report.notes.some((n) => /Fine-tuned .* for 2 steps/.test(n)), `notes ${report.notes} ${ctx}`);
      check(
        report.lossCurve.length === 2 && report.lossCurve[1].step === 2,
        `curve ${JSON.stringify(report.lossCurve)}`,
      );
      check(report.timings.some((t) => t.stage === "fine-tune with ADDT"), "fine-tune timing");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main job: a missing folder or a bad flag is one line and exit 2, before any work", async () => {
  const missing = await addt(["--classifier", "/nonexistent/cls", "--n", "2"]);
  check(
    missing.code === 2 && missing.stderr.trim().split("\n").length === 1 &&
      /\/nonexistent\/cls/.test(missing.stderr),
    `exit ${missing.code}: ${missing.stderr}`,
  );
  const bad = await addt(["--nfe", "3"]);
  check(
    bad.code === 2 && /divisor/.test(bad.stderr) && bad.stderr.trim().split("\n").length === 1,
    bad.stderr,
  );
  const notNumber = await addt(["--n", "many"]);
  check(notNumber.code === 2 && /--n expects/.test(notNumber.stderr), notNumber.stderr);
  const unknown = await addt(["--bogus"]);
  check(unknown.code === 2 && unknown.stderr.trim().split("\n").length === 1, unknown.stderr);
  // a subcommand's flags stay the subcommand's: eval (not the main job) sees --nfe 3 and refuses it
  const sub = await addt(["eval", "--classifier", "c", "--ddpm", "d", "--nfe", "3"]);
  check(sub.code === 2 && /^addt: NFE 3 must be a positive divisor/.test(sub.stderr), sub.stderr);
});

Deno.test("main job flags: --full sets the protocol, explicit flags override it, subcommand flags stay theirs", () => {
  const full = mainConfigFromFlags({ full: true, n: "32", defense: "dp_ddpm,dp_ddim" });
  check(
    full.full && full.n === 32 && full.steps === 20 && full.eot === 10 && full.k === 20,
    JSON.stringify(full),
  );
  check(
    full.l2 && full.autoAttackN > 0 && full.defenses.length === 2,
    "full: L2 rows, AutoAttack-rand, both defenses",
  );
  const specs = mainAttacks(full);
  check(
    specs.some((s) => s.norm === "l2" && s.eps === 2 && s.mode === "dw_both") &&
      specs.every((s) => s.eot === 10),
    "full attacks",
  );
  const plain = mainConfigFromFlags({});
  check(JSON.stringify(plain) === JSON.stringify(mainDefaults()), "no flags: the defaults");
  let threw = "";
  try {
    mainConfigFromFlags({ defense: "dp_foo" });
  } catch (e) {
    threw = (e as Error).message;
  }
  check(/--defense expects/.test(threw), `bad defense: ${threw}`);
  const cifar = mainDefaults({ dataset: "cifar10" });
  check(
    sweepWithStandard(cifar).at(-1) === 8 / 255 && cifar.classifier.includes("cifar10"),
    "CIFAR-10 defaults",
  );
  check(
    JSON.stringify(sweepWithStandard(mainDefaults({ epsSweep: [0.3, 0.1] }))) === "[0.1,0.3]",
    "sweep dedup",
  );
});

Deno.test("main job helpers: loss curve parsing skips non-loss lines; mismatched reports are refused", () => {
  const pts = parseLossCurve('{"step":2,"loss":1}\n\n{"step":1,"loss":2}\n{"step":3,"acc":1}\n{"step":4,"lo');
  check(JSON.stringify(pts) === '[{"step":1,"loss":2},{"step":2,"loss":1}]', JSON.stringify(pts));
  const fake = (n: number) => ({ n, rows: [] }) as unknown as EvalReport;
  let threw = false;
  try {
    comparisonRows("DP_DDPM", fake(4), fake(5), false);
  } catch {
    threw = true;
  }
  check(threw, "reports of different image counts must not be compared");
});
