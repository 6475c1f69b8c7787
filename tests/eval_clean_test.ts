/**
 * `addt eval-clean`: the per-image noise kernel against the library's draws, the counts against an
 * independent run of the same pipeline through the library (drawNoiseSet per image, DiffusionPurifier,
 * host argmax), resume after a stop, and the CLI end to end with its one-line errors.
 */
import { check, freshSeed, randArray, runAddt, testGpu } from "./util.ts";
import { TINY_NETS, tinyDefenseNets } from "./attack_reference.ts";
import { keep, scopeAsync, type Tensor } from "../src/tensor.ts";
import { constant, noGrad, type Var } from "../src/autodiff/var.ts";
import { linear } from "../src/autodiff/matmul.ts";
import type { Classifier } from "../src/defense/networks.ts";
import { normal, rngKey } from "../src/ops/random.ts";
import { perImageNormal } from "../src/ops/image_noise.ts";
import { drawNoiseSet, linearSchedule, type NoiseSet, type SamplerKind } from "../src/diffusion/sampler.ts";
import { DiffusionPurifier } from "../src/defense/purifier.ts";
import {
  type CleanConfig,
  cleanDefaults,
  cleanNoise,
  type CleanReport,
  evaluateClean,
  settingStream,
} from "../src/eval/clean.ts";
import { writeTinyRunFolders } from "./tiny_runs.ts";

const gpu = await testGpu();

const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

Deno.test("perImageNormal: row n is normal() with the key's counter + n, bit for bit (odd and vec4 sizes)", async () => {
  const seed = freshSeed();
  for (const shape of [[3, 1, 3, 5], [4, 2, 2, 4], [1, 7]]) {
    const stream = seed % 1000, first = (seed >>> 12) % 5000, site = seed % 3;
    const per = shape.slice(1).reduce((a, b) => a * b, 1);
    const batch = await gpu.read(perImageNormal(gpu, shape, rngKey(gpu, seed, stream, first), site));
    for (let n = 0; n < shape[0]; n++) {
      const row = await gpu.read(normal(gpu, [per], rngKey(gpu, seed, stream, first + n), site));
      check(
        sameBits(batch.subarray(n * per, (n + 1) * per), row),
        `seed ${seed}: row ${n} of [${shape}] differs from the library's draw`,
      );
    }
    check(batch.every(Number.isFinite), `seed ${seed}: non-finite noise (poisoned output left unwritten?)`);
  }
});

Deno.test("cleanNoise: image i's set is drawNoiseSet of key (seed, stream, i), whatever the batch", async () => {
  const seed = freshSeed() % 100000, shape = [3, 2, 2, 2], per = 8, first = 17;
  const stream = settingStream("ddpm", 40, 4);
  const shapeOf = { nSteps: 5, reverseStochastic: true };
  const batch = cleanNoise(gpu, shape, first, seed, stream, shapeOf);
  check(batch.reverse.length === 5, "one reverse draw per step");
  for (let i = 0; i < 3; i++) {
    const one = drawNoiseSet(gpu, [1, 2, 2, 2], 5, rngKey(gpu, seed, stream, first + i), { sampler: "ddpm" });
    for (
      const [a, b, what] of [
        [batch.forward, one.forward, "forward"],
        ...batch.reverse.map((t, k) => [t, one.reverse[k], `reverse ${k}`] as const),
      ] as const
    ) {
      const rowA = (await gpu.read(a)).subarray(i * per, (i + 1) * per);
      check(sameBits(rowA, await gpu.read(b)), `seed ${seed}: image ${first + i} ${what} noise differs`);
    }
  }
  const ddim = cleanNoise(gpu, shape, first, seed, settingStream("ddim", 40, 4), {
    ...shapeOf,
    reverseStochastic: false,
  });
  check(ddim.reverse.length === 0, "DDIM eta 0 draws only the forward noise");
  check(
    settingStream("ddim", 40, 4) !== stream && settingStream("ddpm", 40, 2) !== stream,
    "distinct streams",
  );
});

// ------------------------------------------------------------------ counts against the library

const { UCFG } = TINY_NETS;
const SHAPE = [UCFG.in_channels, UCFG.sample_size, UCFG.sample_size] as const;
const PER = SHAPE[0] * SHAPE[1] * SHAPE[2];
const SCHEDULE = linearSchedule(1000);

const epsOf = (nets: ReturnType<typeof tinyDefenseNets>) =>
  nets.defense({ tStar: 1, nfe: 1, sampler: "ddpm" }).purifier!.eps;

/** A random linear classifier: unlike a tiny random CNN (nearly constant logits), its prediction moves
 * with the purifier's noise, so counts can tell one noise from another. */
function linearClassifier(seed: number): Classifier {
  const w = keep(gpu.tensor(Float32Array.from(randArray(10 * PER, seed, -1, 1)), [10, PER]));
  return (x: Var) => linear(constant(x.value.reshape([x.shape[0], PER])), constant(w), null);
}

/** Predictions of the (purified) images through the library: each image's own noise set from
 * drawNoiseSet with its key (seed, stream, dataset index), stacked into the batch on the host. */
function referencePredictions(
  nets: ReturnType<typeof tinyDefenseNets>,
  classifier: Classifier,
  images: Float32Array,
  c: CleanConfig,
  sampler: SamplerKind | null,
  tStar: number,
): Promise<number[]> {
  const n = images.length / PER;
  return scopeAsync(async () => {
    const x = constant(gpu.tensor(images, [n, ...SHAPE]));
    if (sampler === null) return argmaxRows(await gpu.read(noGrad(() => classifier(x).value)), n);
    const purifier = new DiffusionPurifier(epsOf(nets), { tStar, nfe: c.nfe, sampler, schedule: SCHEDULE });
    const stream = settingStream(sampler, tStar, c.nfe);
    const sets = Array.from(
      { length: n },
      (_, i) =>
        drawNoiseSet(gpu, [1, ...SHAPE], purifier.nSteps, rngKey(gpu, c.seed, stream, c.offset + i), {
          sampler,
        }),
    );
    const stack = async (pick: (s: NoiseSet) => Tensor) => {
      const all = new Float32Array(n * PER);
      for (let i = 0; i < n; i++) all.set(await gpu.read(pick(sets[i])), i * PER);
      return gpu.tensor(all, [n, ...SHAPE]);
    };
    const reverse: Tensor[] = [];
    for (let k = 0; k < (purifier.reverseStochastic ? purifier.nSteps : 0); k++) {
      reverse.push(await stack((s) => s.reverse[k]));
    }
    const noise = { forward: await stack((s) => s.forward), reverse };
    const logits = noGrad(() => classifier(purifier.purify(x, noise)).value);
    return argmaxRows(await gpu.read(logits), n);
  });
}

function argmaxRows(logits: Float32Array, n: number): number[] {
  const k = logits.length / n;
  return Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
    return best;
  });
}

const rowsOf = (r: CleanReport) =>
  JSON.stringify(r.rows.map((x) => [x.id, x.accuracy.correct, x.accuracy.n, x.wrong]));

Deno.test("evaluateClean: counts and misclassified indices equal the library pipeline's, per setting", async () => {
  const seed = freshSeed() % 100000, n = 6, offset = 3;
  const nets = tinyDefenseNets(gpu, seed), classifier = linearClassifier(seed + 2);
  const images = Float32Array.from(randArray(n * PER, seed + 1, 0, 1));
  try {
    for (const sampler of ["ddpm", "ddim"] as const) {
      const c = cleanDefaults({
        classifier: "tiny",
        ddpm: "tiny",
        tStars: [400],
        samplers: [sampler],
        nfe: 4,
        n,
        offset,
        batchSize: n,
        seed,
      });
      const pred = await referencePredictions(nets, classifier, images, c, sampler, 400);
      const plain = await referencePredictions(nets, classifier, images, c, null, 0);
      // the test must be able to fail: another seed's noise moves some prediction
      const other = await referencePredictions(
        nets,
        classifier,
        images,
        { ...c, seed: seed + 7 },
        sampler,
        400,
      );
      check(
        other.some((p, i) => p !== pred[i]),
        `seed ${seed}: the noise does not change any ${sampler} prediction`,
      );
      // labels: right for the first half, wrong for the rest (under the reference noise)
      const labels = Uint32Array.from(pred, (p, i) => i < n / 2 ? p : (p + 1) % 10);
      const r = await evaluateClean(
        {
          gpu,
          classifier,
          eps: epsOf(nets),
          schedule: SCHEDULE,
          images,
          labels,
          imageShape: SHAPE,
        },
        c,
        { progress: () => {}, commit: "test" },
      );
      const purified = r.rows[1], alone = r.rows[0];
      const wantWrong = Array.from({ length: n - n / 2 }, (_, i) => offset + n / 2 + i);
      check(
        purified.accuracy.correct === n / 2 && JSON.stringify(purified.wrong) === JSON.stringify(wantWrong),
        `seed ${seed} ${sampler}: ${purified.accuracy.correct} correct, wrong ${purified.wrong} (want ${wantWrong})`,
      );
      const plainWrong = plain.flatMap((p, i) => p === labels[i] ? [] : [offset + i]);
      check(
        JSON.stringify(alone.wrong) === JSON.stringify(plainWrong) &&
          alone.accuracy.correct === n - plainWrong.length,
        `seed ${seed}: classifier alone wrong ${alone.wrong} vs ${plainWrong}`,
      );
      const ci = purified.accuracy.ci95;
      check(ci[0] < 0.5 && 0.5 < ci[1] && purified.accuracy.n === n, `interval ${ci}`);
    }
  } finally {
    nets.dispose();
  }
});

Deno.test("evaluateClean: a run stopped after a batch resumes to the uninterrupted numbers; other weights restart", async () => {
  const seed = freshSeed() % 100000, n = 5;
  const nets = tinyDefenseNets(gpu, seed);
  const images = Float32Array.from(randArray(n * PER, seed + 1, 0, 1));
  const labels = Uint32Array.from({ length: n }, (_, i) => (seed + i) % 10);
  const dir = await Deno.makeTempDir();
  const c = cleanDefaults({
    classifier: "tiny",
    ddpm: "tiny",
    tStars: [200, 400],
    samplers: ["ddpm"],
    nfe: 4,
    n,
    batchSize: 2,
    seed,
  });
  const inputs = {
    gpu,
    classifier: linearClassifier(seed + 2),
    eps: epsOf(nets),
    schedule: SCHEDULE,
    images,
    labels,
    imageShape: SHAPE,
    fingerprint: "weights-a",
  };
  const quiet = { progress: () => {}, commit: "test" };
  try {
    const whole = await evaluateClean(inputs, { ...c, out: `${dir}/whole` }, quiet);
    let stopped = false;
    try {
      await evaluateClean(inputs, { ...c, out: `${dir}/cut` }, {
        ...quiet,
        afterBatch: (part, done) => {
          if (part === "ddpm:200" && done === 4) throw new Error("killed");
        },
      });
    } catch (e) {
      stopped = (e as Error).message === "killed";
    }
    check(stopped, "the stop hook did not stop the run");
    const saved = JSON.parse(await Deno.readTextFile(`${dir}/cut/progress.json`));
    check(saved.parts["ddpm:200"].done === 4 && saved.parts.classifier.done === n, "progress after the stop");
    const resumed = await evaluateClean(inputs, { ...c, out: `${dir}/cut` }, quiet);
    check(resumed.resumedImages === n + 4, `resumed ${resumed.resumedImages} images`);
    check(rowsOf(resumed) === rowsOf(whole), `seed ${seed}: resumed ${rowsOf(resumed)} vs ${rowsOf(whole)}`);
    // a longer run reuses the shorter one's images as its first ones; changed weights start over
    const again = await evaluateClean(
      { ...inputs, fingerprint: "weights-b" },
      { ...c, out: `${dir}/cut` },
      quiet,
    );
    check(again.resumedImages === 0 && rowsOf(again) === rowsOf(whole), "other weights must not resume");
  } finally {
    nets.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ the command

const addt = runAddt;

Deno.test("eval-clean CLI: table, report files, resume by rerunning; bad input is one line and exit 2", async () => {
  const dir = await Deno.makeTempDir();
  const seed = freshSeed() % 1000;
  try {
    await writeTinyRunFolders(gpu, dir, seed, { timesteps: 100 });
    const models = ["eval-clean", "--classifier", `${dir}/cls`, "--ddpm", `${dir}/ddpm`];
    const args = [
      ...models,
      "--t-star",
      "20,40",
      "--nfe",
      "2",
      "--n",
      "3",
      "--batch-size",
      "2",
      "--seed",
      String(seed),
    ];
    const ok = await addt([...args, "--out", `${dir}/out`]);
    check(ok.code === 0, `eval-clean failed (exit ${ok.code}):\n${ok.stderr}`);
    const tableRows = ok.stdout.split("\n").filter((l) =>
      /^\| (classifier alone|DP_DDPM|DP_DDIM) \|/.test(l)
    );
    check(tableRows.length === 5 && /ETA/.test(ok.stderr), ok.stdout + ok.stderr);
    const report = JSON.parse(await Deno.readTextFile(`${dir}/out/report.json`));
    for (const k of ["config", "seed", "commit", "adapter", "wallSeconds", "rows"]) {
      check(k in report, `report.json lacks ${k}`);
    }
    check(
      report.rows.length === 5 &&
        report.rows.every((r: { imagesPerSecond: number }) => r.imagesPerSecond > 0),
      "rows",
    );
    check(
      (await Deno.readTextFile(`${dir}/out/report.md`)).includes("| DP_DDIM | 40 (0.4 T) |"),
      "report.md",
    );
    const again = await addt([...args, "--out", `${dir}/out`]);
    const counts = (r: { rows: { accuracy: { correct: number } }[] }) =>
      r.rows.map((x) => x.accuracy.correct).join();
    const report2 = JSON.parse(await Deno.readTextFile(`${dir}/out/report.json`));
    check(again.code === 0 && /resuming/.test(again.stderr) && report2.resumedImages === 15, again.stderr);
    check(counts(report2) === counts(report), `rerun counts ${counts(report2)} vs ${counts(report)}`);

    const fails: [string[], RegExp][] = [
      [[...models, "--t-star", "25", "--nfe", "10"], /--t-star 25 is not a multiple of --nfe 10/],
      [[...models, "--t-star", "100", "--nfe", "10", "--n", "2"], /below the DDPM's T = 100/],
      [[...models, "--t-star", "20", "--nfe", "2", "--offset", "9999", "--n", "2"], /has 10000 images/],
      [[...models, "--sampler", "ddpm,euler"], /--sampler expects ddpm \| ddim, got "euler"/],
      [["eval-clean", "--classifier", `${dir}/nothing`, "--ddpm", `${dir}/ddpm`], /no such folder/],
      [["eval-clean", "--ddpm", `${dir}/ddpm`], /--classifier is required/],
    ];
    for (const [a, re] of fails) {
      const r = await addt(a);
      const lines = r.stderr.trim().split("\n");
      check(
        r.code === 2 && lines.length === 1 && re.test(lines[0]),
        `${a.join(" ")}: exit ${r.code}\n${r.stderr}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
