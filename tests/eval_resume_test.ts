import { check, freshSeed, randArray, testGpu } from "./util.ts";
import { TINY_NETS, tinyDefenseNets } from "./attack_reference.ts";
import { attackDefaults, type EvalConfig, evalDefaults } from "../src/eval/config.ts";
import type { EvalReport } from "../src/eval/report.ts";
import { type EvalHooks, evaluate } from "../src/eval/run.ts";
import type { Gpu } from "../src/gpu/context.ts";
import { constant, record, type Var } from "../src/autodiff/var.ts";
import { linear } from "../src/autodiff/matmul.ts";
import { frozenEpsModel } from "../src/defense/networks.ts";
import { DiffusionPurifier } from "../src/defense/purifier.ts";
import { type Defense, purified } from "../src/defense/defense.ts";
import {
  type BatchRecord,
  EVAL_PROGRESS_FORMAT,
  type EvalProgress,
  evalProgressKey,
  reusableBatches,
  weightsStamps,
} from "../src/eval/resume.ts";

const gpu = await testGpu();

/**
 * The tiny purifier in front of a random linear classifier, with labels its clean verdicts: unlike the tiny
 * CNN (one class for every input) its verdicts on purified images depend on the purifier's noise, so a
 * resumed batch drawing the wrong noise changes the per-sample results.
 */
function noiseSensitiveDefense(gpu: Gpu, seed: number, images: Float32Array, per: number) {
  const nets = tinyDefenseNets(gpu, seed), classes = 10, n = images.length / per;
  const w = Float32Array.from(randArray(classes * per, seed + 3, -1, 1));
  const wt = gpu.tensor(w, [classes, per]);
  const classifier = (x: Var) => {
    const flat = record("flatten", x.value.reshape([x.shape[0], per]), [x], (g) => [g.reshape(x.shape)]);
    return linear(flat, constant(wt), null);
  };
  const labels = Uint32Array.from({ length: n }, (_, i) => {
    const logit = (c: number) =>
      w.slice(c * per, (c + 1) * per).reduce((s, v, j) => s + v * images[i * per + j], 0);
    let best = 0;
    for (let c = 1; c < classes; c++) if (logit(c) > logit(best)) best = c;
    return best;
  });
  const eps = frozenEpsModel(nets.stores[0], TINY_NETS.UCFG);
  const defense: Defense = purified(
    classifier,
    new DiffusionPurifier(eps, { tStar: 100, nfe: 2, sampler: "ddpm" }),
    "tiny-linear",
  );
  return {
    defense,
    labels,
    dispose: () => {
      nets.dispose();
      wt.dispose();
    },
  };
}

/** Every count of a report (no timings): equal strings mean equal results. */
const countsOf = (r: EvalReport) =>
  JSON.stringify({
    n: r.n,
    k: r.k,
    clean: r.clean,
    rows: r.rows.map((x) => [x.label, x.counts]),
    sanity: r.sanity,
  });

Deno.test("eval progress key: ignores out and n, keeps the batch size and the weights, not key order", async () => {
  const base = evalDefaults({ classifier: "c", ddpm: "d", n: 8, batchSize: 4 });
  const w = [{ path: "c/model.safetensors", bytes: 10, sha256: "ab".repeat(32) }];
  const key = evalProgressKey(base, w);
  check(
    evalProgressKey({ ...base, n: 100, out: "elsewhere" }, w) === key,
    "n and out must not change the key",
  );
  // checkpointing only trades memory for speed (the gradient is bit-identical: sampler_test)
  check(evalProgressKey({ ...base, checkpoint: false }, w) === key, "checkpoint must not change the key");
  const reordered = Object.fromEntries(Object.entries(base).reverse()) as unknown as EvalConfig;
  check(evalProgressKey(reordered, w) === key, "field order must not change the key");
  for (
    const changed of [{ batchSize: 2 }, { seed: 1 }, { offset: 3 }, { k: 3 }, {
      attacks: [attackDefaults("mnist", { eot: 2 })],
    }]
  ) {
    check(
      evalProgressKey({ ...base, ...changed }, w) !== key,
      `${JSON.stringify(changed)} must change the key`,
    );
  }
  check(evalProgressKey(base, [{ ...w[0], bytes: 11 }]) !== key, "weights size must change the key");
  check(evalProgressKey(base, [{ ...w[0], sha256: "0" }]) !== key, "weights content must change the key");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/w`, "abc");
    const [stamp, missing] = await weightsStamps([`${dir}/w`, `${dir}/none`]);
    // sha256("abc"), the FIPS 180-2 test vector
    const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    check(
      stamp.bytes === 3 && stamp.sha256 === abc && missing.bytes === -1 && missing.sha256 === null,
      JSON.stringify([stamp, missing]),
    );
    // the same bytes with another modification time (a fresh clone, a copied folder) stamp the same
    await Deno.utime(`${dir}/w`, 1, 1);
    const [touched] = await weightsStamps([`${dir}/w`]);
    check(JSON.stringify(touched) === JSON.stringify(stamp), JSON.stringify([touched, stamp]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // recorded batches of 2, 2, 1 images (n = 5): which a run of n images can take as they are
  const rec = (count: number) => ({ count } as BatchRecord);
  const recorded = [rec(2), rec(2), rec(1)];
  const reused = (n: number) => reusableBatches(recorded, n, 2).length;
  check(
    reused(5) === 3 && reused(9) === 2 && reused(4) === 2 && reused(3) === 1 && reused(1) === 0,
    "prefix",
  );
});

Deno.test("evaluate resumes: stopped after batch 1 and continued gives every count of an uninterrupted run", async () => {
  // a seed whose noise decides no verdict would make the comparison empty: take the next seed then
  const first = freshSeed() % 100000;
  for (let seed = first; seed < first + 8; seed++) if (await resumeCase(seed)) return;
  throw new Error(`seeds ${first}..${first + 7}: no verdict depended on the noise`);
});

/** The resume checks on one seed; false when no verdict of the uninterrupted run depends on the noise. */
async function resumeCase(seed: number): Promise<boolean> {
  const nMax = 5, batchSize = 2;
  const { UCFG } = TINY_NETS;
  const shape = [UCFG.in_channels, UCFG.sample_size, UCFG.sample_size] as const;
  const per = shape[0] * shape[1] * shape[2];
  const images = Float32Array.from(randArray(nMax * per, seed + 1, 0, 1));
  const nets = noiseSensitiveDefense(gpu, seed, images, per);
  const { defense, labels } = nets;
  const attacks = [attackDefaults("mnist", { steps: 1, eps: 0.1 })];
  const config = evalDefaults({ classifier: "tiny", ddpm: "tiny", n: 4, batchSize, k: 4, seed, attacks });
  const dir = await Deno.makeTempDir();
  const path = `${dir}/progress.json`, weightsFile = `${dir}/weights.safetensors`;
  const keyOf = async (c: EvalConfig) => evalProgressKey(c, await weightsStamps([weightsFile]));
  const readProgress = async (file = path) => JSON.parse(await Deno.readTextFile(file)) as EvalProgress;
  /** The per-sample results of the recorded batches (no timings). */
  const flagsOf = (p: EvalProgress) =>
    JSON.stringify(
      p.batches.map(({ wallSeconds: _w, rows, ...b }) => ({ ...b, rows: rows.map((x) => x.flags) })),
    );
  /** Runs one piece; returns the report (or null when stopped), the batches it computed, its lines. */
  const piece = async (c: EvalConfig, resume: string | null, stopAfter = Infinity) => {
    const computed: number[] = [], lines: string[] = [];
    const hooks: EvalHooks = {
      progress: (l) => lines.push(l),
      commit: "test",
      afterBatch: (b) => {
        computed.push(b);
        if (computed.length >= stopAfter) throw new Error("stopped by the test");
      },
      ...(resume ? { resume: { path: resume, key: await keyOf(c) } } : {}),
    };
    const t0 = performance.now();
    try {
      const report = await evaluate({ gpu, defense, images, labels, imageShape: shape }, c, hooks);
      return { report, computed, lines, seconds: (performance.now() - t0) / 1000 };
    } catch (e) {
      check(/stopped by the test/.test((e as Error).message), `seed ${seed}: ${e}`);
      return { report: null, computed, lines, seconds: (performance.now() - t0) / 1000 };
    }
  };
  try {
    await Deno.writeTextFile(weightsFile, "weights v1");
    // the uninterrupted run keeps its own progress file, to compare per-sample results too
    const whole = await piece(config, `${dir}/whole.json`);
    check(
      whole.report && whole.computed.join() === "0,1",
      `seed ${seed}: uninterrupted run ${whole.computed}`,
    );
    // the comparison below means something only if the draws decide some verdicts
    const wholeFlags = (await readProgress(`${dir}/whole.json`)).batches.flatMap((
      b,
    ) => [b.clean, ...b.rows.map((x) => x.flags)]);
    if (!wholeFlags.some((f) => f.mean.some((m) => m > 0 && m < 1))) return false;

    const stopped = await piece(config, path, 1);
    check(stopped.report === null && stopped.computed.join() === "0", `seed ${seed}: stop after batch 1`);
    const afterStop = await readProgress();
    check(
      afterStop.format === EVAL_PROGRESS_FORMAT && afterStop.batches.length === 1 &&
        afterStop.batches[0].count === 2,
      `seed ${seed}: progress after the stop holds batch 1`,
    );

    const resumed = await piece(config, path);
    check(
      resumed.report && resumed.computed.join() === "1",
      `seed ${seed}: resumed computed ${resumed.computed}`,
    );
    check(
      resumed.lines.some((l) => /resuming from .*: 1\/2 batches \(2 images\)/.test(l)),
      resumed.lines.join("\n"),
    );
    check(
      countsOf(resumed.report) === countsOf(whole.report!),
      `seed ${seed}: resumed counts differ:\n${countsOf(resumed.report)}\n${countsOf(whole.report!)}`,
    );
    const full = await readProgress();
    check(
      flagsOf(full) === flagsOf(await readProgress(`${dir}/whole.json`)),
      `seed ${seed}: resumed per-sample results differ from the uninterrupted run's`,
    );
    // the report's wall time is the sum over the pieces
    const recorded = full.batches.reduce((s, b) => s + b.wallSeconds, 0);
    const w = resumed.report.wallSeconds;
    check(
      w >= recorded && w <= afterStop.batches[0].wallSeconds + resumed.seconds + 1e-3,
      `seed ${seed}: wall ${w} s vs recorded ${recorded} s, pieces ${
        afterStop.batches[0].wallSeconds
      } + ${resumed.seconds}`,
    );
    check(resumed.report.started === afterStop.started, "started is the first piece's");

    // a larger n continues: batches 1 and 2 are reused, only the new one runs
    const larger = await piece({ ...config, n: nMax }, path);
    check(
      larger.report && larger.computed.join() === "2" && larger.report.n === nMax,
      `larger n: ${larger.computed}`,
    );
    const grown = larger.report.clean.single.correct - whole.report!.clean.single.correct;
    check(grown === 0 || grown === 1, `seed ${seed}: the first 4 images' counts must be kept`);

    // another config starts over (n is not part of the key: one cheap batch is enough)
    const other = { ...config, seed: seed + 1, n: 1, checkUndefended: false };
    const changed = await piece(other, path);
    check(changed.computed.join() === "0", `seed ${seed}: changed config computed ${changed.computed}`);
    check(
      changed.lines.filter((l) => /another configuration or other weights; starting over/.test(l)).length ===
        1,
      changed.lines.join("\n"),
    );
    // rerunning it as it is reuses everything; changed weights (the same size) start over
    check((await piece(other, path)).computed.length === 0, "an unchanged rerun recomputes nothing");
    await Deno.writeTextFile(weightsFile, "weights v2");
    const reweighted = await piece(other, path);
    check(
      reweighted.computed.join() === "0" && reweighted.lines.some((l) => /starting over/.test(l)),
      `seed ${seed}: changed weights computed ${reweighted.computed}`,
    );
    return true;
  } finally {
    nets.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}
