import { check, freshSeed, randArray, rng, runAddt, testGpu } from "./util.ts";
import { TINY_NETS, tinyDefenseNets } from "./attack_reference.ts";
import * as E from "fp-ts/Either.js";
import { accuracyStat, countsOf, wilson, Z95 } from "../src/eval/stats.ts";
import {
  attackDefaults,
  attackLabel,
  type AttackSpec,
  configFromJson,
  evalDefaults,
  stepSize,
  validateEvalConfig,
} from "../src/eval/config.ts";
import { reportMarkdown, type RowReport, sanityWarnings } from "../src/eval/report.ts";
import { evaluate } from "../src/eval/run.ts";
import { attackCost } from "../src/eval/cost.ts";
import { configFromFlags } from "../src/cli/eval.ts";
import { writeTinyRunFolders } from "./tiny_runs.ts";
import { TINY_UNET, unetTrace } from "../src/nn/unet.ts";

const gpu = await testGpu();

const near = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol;

Deno.test("wilson: closed forms at 0 and n, symmetry, and the quadratic-root definition", () => {
  const z2 = Z95 * Z95;
  // 0/n: [0, z^2 / (n + z^2)]; n/n: [n / (n + z^2), 1]
  const [lo0, hi0] = wilson(0, 10), [lo1, hi1] = wilson(10, 10);
  check(lo0 === 0 && near(hi0, z2 / (10 + z2), 1e-12) && near(hi0, 0.27753, 1e-5), `0/10: ${lo0}, ${hi0}`);
  check(hi1 === 1 && near(lo1, 10 / (10 + z2), 1e-12), `10/10: ${lo1}, ${hi1}`);
  const [a, b] = wilson(5, 10);
  check(near(a, 0.23659, 1e-5) && near(b, 0.76341, 1e-5), `5/10: ${a}, ${b}`);
  // the bounds are the roots p of (k/n - p)^2 = z^2 p (1 - p) / n
  for (const [k, n] of [[3, 17], [81, 263], [999, 1000], [1, 2]]) {
    const [l, h] = wilson(k, n);
    for (const p of [l, h]) {
      const lhs = (k / n - p) ** 2, rhs = z2 * p * (1 - p) / n;
      check(near(lhs, rhs, 1e-12), `wilson(${k}, ${n}) bound ${p} is not a root`);
    }
    check(l < k / n && k / n < h, `wilson(${k}, ${n}) does not contain the estimate`);
  }
  const s = accuracyStat(7, 20);
  check(s.accuracy === 0.35 && s.n === 20 && s.ci95[0] < 0.35, "accuracyStat");
  const c = countsOf({ single: [1, 0, 1], mean: [1, 0.5, 0.5], worst: [1, 0, 0] });
  check(
    c.single.correct === 2 && c.mean.correct === 2 && c.worst.correct === 1 && c.mean.n === 3,
    "countsOf",
  );
});

Deno.test("eval config: defaults, paper step ratios, JSON merge and validation errors", () => {
  const base = evalDefaults({ classifier: "runs/cls", ddpm: "runs/ddpm" });
  check(E.isRight(validateEvalConfig(base)), "defaults with model folders should validate");
  const linf = attackDefaults("mnist"), l2 = attackDefaults("mnist", { norm: "l2" });
  check(
    linf.eps === 0.3 && stepSize(linf) === 0.075 && l2.eps === 2 && stepSize(l2) === 0.4,
    "MNIST budgets",
  );
  check(attackDefaults("cifar10").eps === 8 / 255, "CIFAR-10 Linf budget");
  const aa = attackDefaults("mnist", { attack: "autoattack-rand" });
  check(aa.eot === 20 && aa.steps === 100, "AutoAttack-rand defaults: EOT 20, 100 iterations");
  const bad = (c: object, re: RegExp) => {
    const r = validateEvalConfig({ ...base, ...c });
    check(E.isLeft(r) && re.test(r.left.message), `expected /${re.source}/ for ${JSON.stringify(c)}`);
  };
  bad({ nfe: 3 }, /divisor/);
  bad({ ddpm: null }, /DDPM/);
  bad({ defense: "dp_foo" }, /defense/);
  bad({ attacks: [{ ...linf, eot: 0 }] }, /eot/);
  bad({ attacks: [{ ...linf, mode: "dw_all" }] }, /mode/);
  bad({ attacks: [] }, /at least one/);
  const parsed = configFromJson({
    classifier: "c",
    ddpm: "d",
    k: 5,
    attacks: [{ attack: "pgd", norm: "l2", eot: 10 }, { attack: "apgd-dlr", mode: "dw_both" }],
  }, "cfg.json");
  check(E.isRight(parsed), "a partial JSON config merges over the defaults");
  const cfg = (parsed as E.Right<ReturnType<typeof evalDefaults>>).right;
  check(cfg.k === 5 && cfg.n === 256 && cfg.attacks.length === 2, "top-level merge");
  check(
    cfg.attacks[0].eps === 2 && cfg.attacks[0].eot === 10 && cfg.attacks[1].steps === 100,
    "attack merge",
  );
  const unknown = configFromJson({ classifier: "c", epsilon: 3 }, "cfg.json");
  check(E.isLeft(unknown) && /unknown field "epsilon"/.test(unknown.left.message), "unknown field");
  const typed = configFromJson({ classifier: "c", attacks: [{ eps: "0.3" }] }, "cfg.json");
  check(E.isLeft(typed) && /wrong type/.test(typed.left.message), "wrongly typed field");
  check(
    attackLabel({ ...linf, eot: 10, mode: "dw_both" }) === "PGD-20 EOT-10 Linf 0.3 DW_Both",
    attackLabel(linf),
  );
});

Deno.test("eval CLI flags: comma lists make one setting per combination; --config is overridden by flags", async () => {
  const grid = await configFromFlags({
    classifier: "c",
    ddpm: "d",
    attack: "pgd,fgsm",
    eps: "0.1,0.2",
    mode: "fresh,dw_both",
    eot: "4",
    nfe: "5",
  });
  check(grid.attacks.length === 8 && grid.nfe === 5, `grid of ${grid.attacks.length}`);
  check(grid.checkpoint === true, "reverse steps are checkpointed by default");
  const plain = await configFromFlags({ classifier: "c", ddpm: "d", checkpoint: false });
  check(plain.checkpoint === false, "--no-checkpoint turns checkpointing off");
  check(grid.attacks.every((a) => a.eot === 4), "shared flags reach every setting");
  check(
    grid.attacks.filter((a) => a.attack === "fgsm" && a.eps === 0.2 && a.mode === "dw_both").length === 1,
    "product",
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/c.json`,
      JSON.stringify({ classifier: "c", ddpm: "d", n: 64, attacks: [{ eot: 3 }] }),
    );
    const fromFile = await configFromFlags({ config: `${dir}/c.json`, n: "32" });
    check(
      fromFile.n === 32 && fromFile.attacks[0].eot === 3 && fromFile.classifier === "c",
      "file then flags",
    );
    let threw = false;
    try {
      await configFromFlags({ classifier: "c", eps: "0.1,x" });
    } catch (e) {
      threw = /--eps expects a number/.test((e as Error).message);
    }
    check(threw, "a bad list item is a usage error naming the flag");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function row(spec: Partial<AttackSpec>, accuracy: number): RowReport {
  const s = attackDefaults("mnist", spec);
  const stat = accuracyStat(accuracy * 100, 100);
  return {
    label: attackLabel(s),
    spec: { ...s, alphaUsed: stepSize(s) },
    counts: { single: stat, mean: stat, worst: stat },
    seconds: 1,
    secondsPerImage: 0.01,
  };
}

Deno.test("sanity warnings: undefended not near 0, exact weaker than BPDA, accuracy rising with eps", () => {
  const fine = sanityWarnings(
    [row({ eps: 0.1 }, 0.6), row({ eps: 0.3 }, 0.2), row({ eps: 0.3, gradient: "bpda" }, 0.5)],
    [{ norm: "linf", eps: 0.3, robust: accuracyStat(1, 100) }],
  );
  check(fine.length === 0, `unexpected warnings: ${fine}`);
  const w = sanityWarnings(
    [row({ eps: 0.1 }, 0.3), row({ eps: 0.3 }, 0.5), row({ eps: 0.3, gradient: "bpda" }, 0.4)],
    [{ norm: "linf", eps: 0.3, robust: accuracyStat(40, 100) }],
  );
  check(w.length === 3, `expected 3 warnings, got ${w.length}: ${w.join(" | ")}`);
  check(/undefended/.test(w[0]) && /BPDA/.test(w[1]) && /rises/.test(w[2]), w.join(" | "));
  // below the dataset's standard budget an undefended classifier may rightly keep some accuracy
  const weak = [{ norm: "linf", eps: 0.1, robust: accuracyStat(40, 100) }];
  check(sanityWarnings([], weak, () => 0.3).length === 0, "no undefended warning below the standard eps");
  check(sanityWarnings([], weak, () => 0.1).length === 1, "undefended warning at the standard eps");
});

Deno.test("evaluate: tiny purified classifier, every counting and the report's JSON/Markdown shape, reproducible", async () => {
  const seed = freshSeed() % 100000, n = 3;
  const { UCFG } = TINY_NETS;
  const shape = [UCFG.in_channels, UCFG.sample_size, UCFG.sample_size] as const;
  const nets = tinyDefenseNets(gpu, seed);
  const defense = nets.defense({ tStar: 40, nfe: 2, sampler: "ddpm" });
  const images = Float32Array.from(randArray(n * shape[0] * shape[1] * shape[2], seed + 1, 0, 1));
  const r = rng(seed + 2);
  const labels = Uint32Array.from({ length: n }, () => Math.floor(r() * 10));
  const attacks = [
    attackDefaults("mnist", { steps: 1, eot: 2, eps: 0.1 }),
    attackDefaults("mnist", { steps: 1, eps: 0.1, mode: "dw_both" }),
    attackDefaults("mnist", { steps: 1, eps: 0.1, gradient: "bpda" }),
    attackDefaults("mnist", { attack: "apgd-ce", steps: 1, eps: 0.1, mode: "dw_rev", norm: "l2" }),
  ];
  // batches of 2 and 1: the last batch is smaller
  const config = evalDefaults({ classifier: "tiny", ddpm: "tiny", n, batchSize: 2, k: 2, seed, attacks });
  const lines: string[] = [];
  try {
    const run = (c: typeof config) =>
      evaluate({ gpu, defense, images, labels, imageShape: shape }, c, {
        progress: (l) => lines.push(l),
        commit: "test",
      });
    const report = await run(config);
    check(report.rows.length === attacks.length && report.n === n && report.k === 2, "report size");
    const all = [report.clean, ...report.rows.map((x) => x.counts)];
    for (const c of all) {
      for (const s of [c.single, c.mean, c.worst]) {
        check(
          s.n === n && s.ci95[0] <= s.accuracy && s.accuracy <= s.ci95[1],
          `interval ${JSON.stringify(s)}`,
        );
      }
      check(
        c.worst.correct <= c.single.correct && c.worst.correct <= c.mean.correct,
        "worst of K is the least",
      );
    }
    // DW_Both is deterministic: the K evaluations agree, so the three countings do too
    const both = report.rows[1].counts;
    check(
      both.single.correct === both.mean.correct && both.mean.correct === both.worst.correct,
      "DW_Both counts",
    );
    check(report.sanity.undefendedRobust.length === 2, "one undefended check per (norm, eps)");
    check(report.defense.modelCallsPerPurification === 3 && report.commit === "test", "defense meta");
    check(
      report.gpuHighWaterBytes > 0 && report.wallSeconds > 0 && report.adapter.description !== "",
      "provenance",
    );
    check(
      lines.length === 2 * (attacks.length + 2) && /batch 2\/2 \(1 image\)/.test(lines.at(-1)!),
      lines.join("\n"),
    );
    const json = JSON.parse(JSON.stringify(report));
    for (
      const key of ["format", "config", "seed", "commit", "adapter", "wallSeconds", "clean", "rows", "sanity"]
    ) {
      check(key in json, `report JSON lacks ${key}`);
    }
    const md = reportMarkdown(report);
    const tableRows = md.split("\n").filter((l) => l.startsWith("| "));
    check(tableRows.length === attacks.length + 2, `Markdown table rows: ${tableRows.length}`);
    for (const row of report.rows) check(md.includes(`| ${row.label} |`), `Markdown lacks ${row.label}`);
    // every draw comes from the seed: the stochastic setting again (alone) gives the same counts
    const again = await run({ ...config, attacks: attacks.slice(0, 1), checkUndefended: false });
    const counts = (c: unknown[]) => JSON.stringify(c);
    check(
      counts([again.clean, again.rows[0].counts]) === counts([report.clean, report.rows[0].counts]),
      `a second run with seed ${seed} differs`,
    );
  } finally {
    nets.dispose();
  }
});

Deno.test("cost arithmetic: PGD-20 EOT-10 at NFE 10 is 200 gradients of 11 checkpointed UNet steps", () => {
  const c = attackCost({
    unetFlops: 1e8,
    classifierFlops: 1e7,
    modelCalls: 11,
    gradients: 20,
    eot: 10,
    k: 20,
  });
  check(c.perGradient === 11 * 4 * 1e8 + 3e7, `per gradient ${c.perGradient}`);
  check(c.attack === 200 * c.perGradient && c.evaluation === 40 * (11e8 + 1e7), "attack and evaluation");
  check(unetTrace(TINY_UNET).flops > 0, "trace");
});

Deno.test("eval CLI: end to end from training run folders on MNIST, and a usage error", async () => {
  const dir = await Deno.makeTempDir();
  const seed = freshSeed() % 1000;
  try {
    await writeTinyRunFolders(gpu, dir, seed);
    const addt = (args: string[]) => runAddt(["eval", ...args]);
    const common = [
      "--classifier",
      `${dir}/cls`,
      "--ddpm",
      `${dir}/ddpm`,
      "--defense",
      "dp_ddim",
      "--t-star",
      "20",
    ];
    const ok = await addt([
      ...common,
      ...["--nfe", "1", "--steps", "1", "--n", "3", "--batch-size", "2", "--k", "2", "--out", `${dir}/out`],
      ...["--mode", "fresh,dw_fwd", "--seed", String(seed)],
    ]);
    check(ok.code === 0, `eval failed (exit ${ok.code}):\n${ok.stderr}`);
    check(
      /\| PGD-1 EOT-1 Linf 0.3 DW_Fwd \|/.test(ok.stdout) && /ETA/.test(ok.stderr),
      ok.stdout + ok.stderr,
    );
    const report = JSON.parse(await Deno.readTextFile(`${dir}/out/report.json`));
    check(report.n === 3 && report.rows.length === 2 && report.defense.name === "DP_DDIM", "report.json");
    check((await Deno.readTextFile(`${dir}/out/report.md`)).includes("| clean |"), "report.md");
    const bad = await addt([...common, "--nfe", "3"]);
    check(
      bad.code === 2 && bad.stderr.trim().split("\n").length === 1 && /divisor/.test(bad.stderr),
      bad.stderr,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
