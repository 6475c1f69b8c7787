/**
 * Training: the loss and the timestep draw against float64 / CPU references, the GPU-side statistics, the
 * packed batch upload, settings and checkpoints, the loop's divergence stop, the DDPM and classifier
 * pipelines end to end on tiny configs, and the CLI's one-line failures.
 */
import * as E from "fp-ts/Either.js";
import {
  assertClose,
  checkSteadySteps,
  f32,
  finiteDiff,
  freshSeed,
  randArray,
  repoRoot,
  runAddt,
  testGpu,
} from "./util.ts";
import { scope } from "../src/tensor.ts";
import { backward, constant, leaf, noGrad } from "../src/autodiff/var.ts";
import { mul } from "../src/autodiff/elementwise.ts";
import { keyWords, normal, randomBitsCpu, rngKey, unitCpu } from "../src/ops/random.ts";
import { AdamW, Ema } from "../src/ops/optim.ts";
import { ParamStore } from "../src/nn/params.ts";
import { Batcher } from "../src/data/batches.ts";
import { type Dataset, makeDataset } from "../src/data/dataset.ts";
import { mse, mseRaw } from "../src/train/losses.ts";
import { DDPM_STREAM, drawTimesteps, SITE_DROPOUT, SITE_NOISE } from "../src/train/draws.ts";
import { qSampleRaw } from "../src/diffusion/qsample.ts";
import {
  createClassifierRun,
  disposeClassifierRun,
  evaluateAccuracy,
  recordClassifierStep,
  seekClassifierRun,
} from "../src/train/classifier.ts";
import { classifierForward, type ClassifierModel, createClassifier } from "../src/train/models.ts";
import { createDdpmRun, disposeDdpmRun, recordDdpmStep, seekDdpmRun } from "../src/train/ddpm.ts";
import { createUNet, TINY_UNET, type UNetConfig, unetForward } from "../src/nn/unet.ts";
import { loadParamsFrom } from "../src/nn/model_io.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { StepStats } from "../src/train/stats.ts";
import { BatchInputs } from "../src/train/inputs.ts";
import {
  captureState,
  firstNonFinite,
  readManifest,
  restoreCheckpoint,
  type TrainState,
} from "../src/train/checkpoint.ts";
import { runLoop } from "../src/train/loop.ts";
import { JsonlLog, Progress } from "../src/train/progress.ts";
import { TrainingDivergedError } from "../src/train/errors.ts";
import {
  baseLrAt,
  classifierDefaults,
  ddpmDefaults,
  effectiveLrAt,
  resumeSettings,
  validateSettings,
} from "../src/train/settings.ts";

const gpu = await testGpu();

// ---------------------------------------------------------------- float64 references

function mseRef(p: ArrayLike<number>, t: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) s += (p[i] - t[i]) ** 2;
  return s / p.length;
}

/** A tiny synthetic dataset of random bytes (n images of c x h x w, 10 classes). */
function synthetic(n: number, c: number, h: number, w: number, seed: number): Dataset {
  const bytes = randArray(n * c * h * w, seed, 0, 256);
  const labels = randArray(n, seed + 1, 0, 10);
  return makeDataset({
    name: "synthetic",
    images: Uint8Array.from(bytes, Math.floor),
    labels: Uint8Array.from(labels, Math.floor),
    n,
    c,
    h,
    w,
    classes: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
  });
}

const tempDir = () => Deno.makeTempDir({ prefix: "addt_train_test_" });

// ---------------------------------------------------------------- loss

Deno.test("mse: forward matches float64 on odd and vec4 shapes, poisoned outputs", async () => {
  for (const shape of [[1], [3, 5], [4, 1, 7, 7], [2, 3, 8, 8], [5, 2, 33, 31]]) {
    const n = shape.reduce((a, b) => a * b, 1), s = freshSeed();
    const p = randArray(n, s), t = randArray(n, s + 1);
    const out = scope(() => mseRaw(gpu, gpu.tensor(f32(p), shape), gpu.tensor(f32(t), shape)).loss);
    assertClose(await gpu.read(out), [mseRef(p, t)], n > 4096 ? 1e-4 : 1e-5, `mse [${shape}] seed=${s}`);
    out.dispose();
  }
});

Deno.test("mse: backward matches finite differences; both inputs through backward", async () => {
  for (const shape of [[7], [2, 3, 5]]) {
    const n = shape.reduce((a, b) => a * b, 1), s = freshSeed();
    const p = randArray(n, s), t = randArray(n, s + 1), g = 1.7;
    const pv = leaf(gpu.tensor(f32(p), shape)), tv = leaf(gpu.tensor(f32(t), shape));
    scope(() => backward(mse(pv, tv), gpu.tensor([g])));
    const refP = finiteDiff((x) => [mseRef(x, t)], p, [g]);
    const refT = finiteDiff((x) => [mseRef(p, x)], t, [g]);
    assertClose(await gpu.read(pv.grad!), refP, 1e-5, `d mse / d pred [${shape}] seed=${s}`);
    assertClose(await gpu.read(tv.grad!), refT, 1e-5, `d mse / d target [${shape}] seed=${s}`);
  }
});

Deno.test("mse: a constant target gets no gradient work; the prediction's gradient is exact", async () => {
  const n = 13, s = freshSeed();
  const p = randArray(n, s), t = randArray(n, s + 1);
  const pv = leaf(gpu.tensor(f32(p)));
  scope(() => backward(mse(pv, constant(gpu.tensor(f32(t))))));
  const ref = Array.from(p, (x, i) => (2 * (x - t[i])) / n);
  assertClose(await gpu.read(pv.grad!), ref, 1e-5, `seed=${s}`);
});

// ---------------------------------------------------------------- timesteps

Deno.test("drawTimesteps: floor(u T) of the Philox uniform, bit-exact, integers in [0, T)", async () => {
  for (const [n, T] of [[1, 1000], [37, 1000], [64, 7], [257, 1000]]) {
    const seed = freshSeed(), counter = seed % 1000;
    const key = rngKey(gpu, seed, 5, counter);
    const t = await gpu.read(scope(() => drawTimesteps(gpu, n, T, key)));
    const words = randomBitsCpu(n, keyWords(seed, 5, counter), 0);
    const ref = Array.from(words, (w) => Math.min(Math.floor(Math.fround(unitCpu(w) * T)), T - 1));
    for (let i = 0; i < n; i++) {
      if (t[i] !== ref[i]) throw new Error(`t[${i}] = ${t[i]}, want ${ref[i]} (n=${n} T=${T} seed=${seed})`);
    }
    if (n >= 257 && new Set(t).size < 150) throw new Error(`too few distinct timesteps (seed=${seed})`);
    key.dispose();
  }
});

// ---------------------------------------------------------------- GPU-side statistics and inputs

Deno.test("StepStats: means over the interval, one reading resets, a NaN survives to the reading", async () => {
  const stats = new StepStats(gpu);
  const s = freshSeed(), losses = randArray(5, s, 0, 3), norms = randArray(5, s + 1, 0, 9);
  scope(() => losses.forEach((l, i) => stats.record(gpu.tensor([l]), gpu.tensor([norms[i]]))));
  const r = await stats.read();
  const mean = (a: Float64Array) => a.reduce((x, y) => x + y, 0) / a.length;
  assertClose([r.meanLoss, r.meanGradNorm], [mean(losses), mean(norms)], 1e-6, `stats seed=${s}`);
  if (r.steps !== 5) throw new Error(`steps ${r.steps}`);
  scope(() => stats.record(gpu.tensor([2]), gpu.tensor([4])));
  const again = await stats.read();
  if (again.meanLoss !== 2 || again.meanGradNorm !== 4) {
    throw new Error(`not reset: ${JSON.stringify(again)}`);
  }
  scope(() => {
    stats.record(gpu.tensor([NaN]), gpu.tensor([1]));
    stats.record(gpu.tensor([1]), gpu.tensor([1]));
  });
  if (!Number.isNaN((await stats.read()).meanLoss)) throw new Error("a NaN loss was lost");
  stats.dispose();
});

Deno.test("BatchInputs: images and labels arrive intact through one upload", async () => {
  const s = freshSeed();
  const data = synthetic(11, 3, 5, 7, s);
  const batcher = new Batcher(data, { batchSize: 3, seed: s, range: "symmetric" });
  const inputs = new BatchInputs(gpu, [3, 3, 5, 7]);
  for (const step of [0, 4]) {
    const b = batcher.atStep(step);
    const uploads = gpu.stats.submits;
    inputs.upload(b);
    if (gpu.stats.submits - uploads > 1) throw new Error("more than one submit for an upload");
    const images = await gpu.read(inputs.images), labels = await gpu.readU32(inputs.labels);
    if (images.join() !== b.images.join()) throw new Error(`images differ (seed=${s})`);
    if (labels.join() !== b.labels.join()) throw new Error(`labels differ (seed=${s})`);
  }
  inputs.dispose();
});

// ---------------------------------------------------------------- settings

Deno.test("settings: validation names the flag; resume keeps the run's settings", () => {
  const ok = validateSettings(ddpmDefaults("o"));
  if (E.isLeft(ok)) throw ok.left;
  const cases: [object, RegExp][] = [
    [{ batchSize: 0 }, /--batch-size/],
    [{ lr: -1 }, /--lr/],
    [{ dataset: "cifar10" }, /--data-dir/],
    [{ steps: null, epochs: null }, /--steps or --epochs/],
    [{ betaEnd: 1e-5 }, /--beta-start/],
    [{ out: "" }, /--out/],
  ];
  for (const [o, re] of cases) {
    const r = validateSettings(ddpmDefaults("o", o));
    if (E.isRight(r) || !re.test(r.left.message)) {
      throw new Error(`${JSON.stringify(o)}: ${JSON.stringify(r)}`);
    }
  }
  const bad = validateSettings(classifierDefaults("o", { optimizer: "adam" as "adamw" }));
  if (E.isRight(bad) || !/--optimizer/.test(bad.left.message)) throw new Error("optimizer not checked");

  const saved = ddpmDefaults("o", { steps: 10, lr: 1e-3 });
  const longer = resumeSettings(saved, ddpmDefaults("o", { steps: 20 }), new Set(["steps"]));
  if (E.isLeft(longer) || longer.right.steps !== 20 || longer.right.lr !== 1e-3) {
    throw new Error("resume merge");
  }
  const same = resumeSettings(saved, ddpmDefaults("o"), new Set());
  if (E.isLeft(same) || same.right.steps !== 10) throw new Error("resume keeps the saved length by default");
  const intervals = resumeSettings(
    { ...saved, logEvery: 25, checkpointEvery: 100 },
    ddpmDefaults("o2"),
    new Set(),
  );
  if (E.isLeft(intervals) || intervals.right.checkpointEvery !== 100 || intervals.right.logEvery !== 25) {
    throw new Error("resume keeps the run's own intervals unless given again");
  }
  if (intervals.right.out !== "o2") throw new Error("resume writes to the current --out");
  const given = resumeSettings(
    saved,
    ddpmDefaults("o", { checkpointEvery: 7 }),
    new Set(["checkpointEvery"]),
  );
  if (E.isLeft(given) || given.right.checkpointEvery !== 7) {
    throw new Error("an interval given again applies");
  }
  const clash = resumeSettings(saved, ddpmDefaults("o", { lr: 5e-4 }), new Set(["lr"]));
  if (E.isRight(clash) || !/lr/.test(clash.left.message)) throw new Error("a changed lr must be refused");
});

Deno.test("settings: learning-rate drops by epoch and the optimizer's warmup", () => {
  const s = classifierDefaults("o", { lr: 1, warmup: 4, lrDropEpochs: [2, 3], lrDropFactor: 0.5 });
  const bpe = 10;
  const got = [0, 19, 20, 29, 30].map((step) => baseLrAt(s, step, bpe));
  if (got.join() !== [1, 1, 0.5, 0.5, 0.25].join()) throw new Error(`drops ${got}`);
  const warm = [0, 1, 4, 5].map((step) => effectiveLrAt(s, step, bpe));
  if (warm.join() !== [0, 0.25, 1, 1].join()) throw new Error(`warmup ${warm}`);
});

// ---------------------------------------------------------------- checkpoints and the loop

/** A toy model: one weight vector w, prediction x * w trained towards x (loss mse). */
function toyRun(data: Dataset, seed: number, out: string) {
  const per = data.c * data.h * data.w;
  const init = Float32Array.from(randArray(per, seed, 0.5, 1.5));
  const model = ParamStore.create(gpu, [{ name: "w", shape: [1, data.c, data.h, data.w], init }]);
  const ema = model.clone();
  const optimizer = new AdamW(model, { lr: 0.05, warmupSteps: 2, maxGradNorm: 1 });
  const emaUpdater = new Ema(ema, model, {});
  const state: TrainState = {
    kind: "ddpm",
    model,
    ema,
    optimizer,
    emaUpdater,
    seed,
    dataset: data.name,
    config: { toy: true },
  };
  const batcher = new Batcher(data, { batchSize: 4, seed, range: "symmetric" });
  const inputs = new BatchInputs(gpu, [4, data.c, data.h, data.w]);
  const stats = new StepStats(gpu);
  const recordStep = (_: number, b: ReturnType<Batcher["atStep"]>) => {
    inputs.upload(b);
    model.zeroGrad();
    const x = constant(inputs.images);
    const loss = mse(mul(x, model.get("w")), x);
    backward(loss);
    optimizer.step();
    stats.record(loss.value, optimizer.lastGradNorm);
    emaUpdater.step();
  };
  const dispose = () => [model, ema, optimizer, emaUpdater, inputs, stats].forEach((d) => d.dispose());
  const settings = { ...ddpmDefaults(out), steps: 6, logEvery: 2, checkpointEvery: 2, keep: 2, syncEvery: 3 };
  return { model, ema, optimizer, emaUpdater, state, batcher, stats, recordStep, dispose, settings };
}

function loopSpec(run: ReturnType<typeof toyRun>, start: number, total: number, last: number | null) {
  return {
    gpu,
    settings: run.settings,
    batcher: run.batcher,
    startStep: start,
    totalSteps: total,
    state: run.state,
    stats: run.stats,
    recordStep: run.recordStep,
    setLearningRate: (lr: number) => run.optimizer.setLearningRate(lr),
    progress: new Progress("toy", start, total, 4, { quiet: true }),
    log: new JsonlLog(`${run.settings.out}/train.jsonl`),
    lastCheckpoint: last,
  };
}

Deno.test("checkpoint: write, restore into a fresh run, bit-identical state; manifest last; pruning", async () => {
  const s = freshSeed(), out = await tempDir();
  const data = synthetic(20, 1, 3, 5, s);
  const a = toyRun(data, s, out);
  const result = await runLoop(loopSpec(a, 0, 6, null));
  if (result.manifest?.step !== 6) throw new Error(`manifest ${JSON.stringify(result.manifest)}`);
  const m = await readManifest(out);
  if (m?.step !== 6 || m.files.ema === null) throw new Error(`manifest on disk ${JSON.stringify(m)}`);
  const dirs = [...Deno.readDirSync(`${out}/checkpoints`)].map((e) => e.name).sort();
  if (dirs.join() !== "step-00000004,step-00000006") throw new Error(`pruning kept ${dirs}`);
  const lines = (await Deno.readTextFile(`${out}/train.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
  const keys = ["step", "loss", "lr", "grad_norm", "images_per_s", "wall_s"];
  if (lines.length !== 3 || !lines.every((l) => keys.every((k) => typeof l[k] === "number"))) {
    throw new Error(`log lines ${JSON.stringify(lines)}`);
  }

  const b = toyRun(data, s + 99, out); // different initial weights, overwritten by the restore
  await restoreCheckpoint(out, m, b.state);
  const [ha, hb] = [await captureState(a.state), await captureState(b.state)];
  const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length).join();
  for (const k of ["model", "ema"] as const) {
    if (bits(ha[k]!.get("w")!) !== bits(hb[k]!.get("w")!)) throw new Error(`${k} differs (seed=${s})`);
  }
  for (const slot of ["m", "v"]) {
    if (bits(ha.optimizer.slots[slot]) !== bits(hb.optimizer.slots[slot])) {
      throw new Error(`slot ${slot} differs`);
    }
  }
  if (hb.optimizer.step !== 6 || hb.emaStep !== 6) {
    throw new Error(`counters ${hb.optimizer.step} ${hb.emaStep}`);
  }
  if (firstNonFinite(ha) !== null) throw new Error("finite state reported as non-finite");
  a.dispose();
  b.dispose();
  await Deno.remove(out, { recursive: true });
});

Deno.test("loop: a NaN stops the run at the next reading and keeps the last good checkpoint", async () => {
  const s = freshSeed(), out = await tempDir();
  const run = toyRun(synthetic(20, 1, 3, 5, s), s, out);
  const spec = {
    ...loopSpec(run, 0, 6, null),
    hooks: { afterStep: (step: number) => step === 2 && gpu.fill(run.model.values, NaN) },
  };
  let err: unknown = null;
  try {
    await runLoop(spec);
  } catch (e) {
    err = e;
  }
  if (!(err instanceof TrainingDivergedError)) throw new Error(`expected divergence, got ${err}`);
  if (err.step !== 4 || err.lastGoodStep !== 2) throw new Error(`${err.message} (seed=${s})`);
  if (!/loss is not finite at steps 3\.\.4/.test(err.message) || !/step 2/.test(err.message)) {
    throw new Error(`unclear message: ${err.message}`);
  }
  const m = await readManifest(out);
  if (m?.step !== 2) throw new Error(`manifest moved to ${m?.step}`);
  const h = await captureState(run.state);
  if (firstNonFinite(h) !== "w") throw new Error("non-finite weights not found");
  run.dispose();
  await Deno.remove(out, { recursive: true });
});

// ---------------------------------------------------------------- the DDPM step and pipelines (tiny UNet)

/** A UNet for 1x8x8 images: two levels, attention, dropout. */
const TINY_UNET_8: UNetConfig = {
  ...TINY_UNET,
  sample_size: 8,
  in_channels: 1,
  out_channels: 1,
  block_out_channels: [8, 8],
};

Deno.test("ddpm step: no readback, one upload, no new buffers in steady state, finite loss", async () => {
  const s = freshSeed();
  const settings = ddpmDefaults("unused", { batchSize: 3, seed: s, warmup: 1 });
  const run = createDdpmRun(gpu, settings, TINY_UNET_8, synthetic(10, 1, 8, 8, s));
  seekDdpmRun(run, 0);
  try {
    checkSteadySteps(
      gpu,
      4,
      (step) => scope(() => recordDdpmStep(run, run.batcher.atStep(step))),
      "training",
    );
    const r = await run.stats.read();
    if (!(Number.isFinite(r.meanLoss) && r.meanLoss > 0 && r.steps === 4)) throw new Error(JSON.stringify(r));
    // the key's counter advanced once per step on the GPU
    const key = await gpu.readU32(run.key);
    if (key[3] !== 4 || key.slice(0, 3).join() !== keyWords(s, DDPM_STREAM, 0).slice(0, 3).join()) {
      throw new Error(`key ${key}`);
    }
  } finally {
    disposeDdpmRun(run);
  }
});

const root = repoRoot;

const addt = runAddt;

/** Exit non-zero with exactly one stderr line matching `re` and no stack trace. */
async function failsWithOneLine(args: string[], re: RegExp): Promise<void> {
  const r = await addt(args);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  if (r.code === 0 || lines.length !== 1 || !re.test(lines[0]) || /^\s+at /m.test(r.stderr)) {
    throw new Error(`addt ${args.join(" ")}: exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

/** A 28x28 MNIST UNet small enough for a few steps in a test. */
const TINY_MNIST_UNET = {
  base: "mnist",
  block_out_channels: [8, 8],
  down_block_types: ["DownBlock2D", "AttnDownBlock2D"],
  up_block_types: ["AttnUpBlock2D", "UpBlock2D"],
  norm_num_groups: 4,
};

Deno.test("train-ddpm: a short run writes weights, EMA, manifest and log; refuses to overwrite", async () => {
  const dir = await tempDir(), seed = freshSeed();
  try {
    await Deno.writeTextFile(`${dir}/unet.json`, JSON.stringify(TINY_MNIST_UNET));
    const out = `${dir}/run`;
    const args = [
      "train-ddpm",
      "--out",
      out,
      "--config",
      `${dir}/unet.json`,
      "--steps",
      "4",
      "--batch-size",
      "2",
    ];
    const flags = [...args, "--log-every", "2", "--checkpoint-every", "4", "--seed", String(seed)];
    const r = await addt(flags);
    if (r.code !== 0 || !/ddpm: steps 0\.\.4/.test(r.stdout)) throw new Error(`${r.stdout}\n${r.stderr}`);
    const m = await readManifest(out);
    if (m?.step !== 4 || !m.files.ema) throw new Error(`manifest ${JSON.stringify(m)}`);
    const file = await readSafetensors(`${out}/ema.safetensors`);
    const meta = file.metadata;
    if (meta.step !== "4" || meta.seed !== String(seed) || meta.dataset !== "mnist" || meta.kind !== "ddpm") {
      throw new Error(`metadata ${JSON.stringify(meta)}`);
    }
    const config = JSON.parse(meta.config) as UNetConfig;
    const store = createUNet(gpu, config, 0);
    loadParamsFrom(store, await readSafetensors(`${out}/model.safetensors`), "model");
    store.dispose();
    const log = (await Deno.readTextFile(`${out}/train.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
    if (log.map((l) => l.step).join() !== "2,4" || !log.every((l) => Number.isFinite(l.loss))) {
      throw new Error(`log ${JSON.stringify(log)}`);
    }
    await failsWithOneLine(flags, /already holds a run.*--resume/);
    await failsWithOneLine([...flags, "--resume", "--lr", "0.5"], /lr.*differs from the run being resumed/);
    const again = await addt([...flags, "--resume"]);
    if (again.code !== 0 || !/steps 4\.\.4 \(0 run\)/.test(again.stdout)) {
      throw new Error(again.stdout + again.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train-ddpm: an absurd learning rate stops the run with one line naming the step", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/unet.json`, JSON.stringify(TINY_MNIST_UNET));
    const args = ["train-ddpm", "--out", `${dir}/run`, "--config", `${dir}/unet.json`, "--steps", "6"];
    const flags = [...args, "--batch-size", "2", "--lr", "1e30", "--warmup", "0", "--grad-clip", "none"];
    await failsWithOneLine(
      [...flags, "--log-every", "3"],
      /diverged: .* not finite at (step|steps) [\d.]+; stopped/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train commands: bad flags and files give one clear line and a non-zero exit", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify({ base: "mnist", chanels: [8] }));
    const o = ["--out", `${dir}/o`];
    await failsWithOneLine(["train-ddpm", "--steps", "3"], /--out is required/);
    await failsWithOneLine(
      ["train-ddpm", ...o, "--steps", "three"],
      /--steps expects a non-negative integer/,
    );
    await failsWithOneLine(
      ["train-ddpm", ...o, "--dataset", "svhn"],
      /--dataset expects mnist \| fashion-mnist/,
    );
    await failsWithOneLine(
      ["train-ddpm", ...o, "--config", `${dir}/none.json`],
      /none\.json: file not found/,
    );
    await failsWithOneLine(["train-ddpm", ...o, "--config", `${dir}/bad.json`], /unknown field "chanels"/);
    await failsWithOneLine(["train-ddpm", ...o, "--config", "huge"], /unknown model config "huge"/);
    await failsWithOneLine(["train-ddpm", ...o, "--dataset", "cifar10"], /cifar10 needs --data-dir/);
    await failsWithOneLine(["train-ddpm", ...o, "--data-dir", `${dir}/nowhere`], /mnist: .*file not found/);
    await failsWithOneLine(["train-ddpm", ...o, "--config", "cifar10"], /is for 3x32x32 images, but mnist/);
    await failsWithOneLine(
      ["train-classifier", ...o, "--optimizer", "adam"],
      /--optimizer expects adamw \| sgd/,
    );
    await failsWithOneLine(
      ["train-classifier", ...o, "--steps", "2", "--epochs", "1"],
      /--steps or --epochs/,
    );
    await failsWithOneLine(["train-classifier", ...o, "--no-such-flag"], /unknown option/);
    const noAdapter = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tasks/addt.ts", "train-classifier", ...o, "--steps", "1"],
      cwd: root,
      env: { DENO_WEBGPU_BACKEND: Deno.build.os === "windows" ? "metal" : "dx12" },
      stderr: "piped",
    }).output();
    const lines = new TextDecoder().decode(noAdapter.stderr).trim().split("\n");
    if (noAdapter.code !== 3 || lines.length !== 1 || !/no WebGPU adapter/.test(lines[0])) {
      throw new Error(`without an adapter: exit ${noAdapter.code}, ${lines.join(" | ")}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ddpm step: its loss is the epsilon MSE (float64) of the UNet on the step's own draws", async () => {
  const s = freshSeed();
  const settings = ddpmDefaults("unused", { batchSize: 3, seed: s });
  const run = createDdpmRun(gpu, settings, TINY_UNET_8, synthetic(10, 1, 8, 8, s));
  try {
    const step = 5;
    seekDdpmRun(run, step);
    const batch = run.batcher.atStep(step);
    // the same draws, made independently from the key (seed, stream, counter = step)
    const [pred, noise, t] = await scope(() => {
      run.inputs.upload(batch);
      const t = drawTimesteps(gpu, 3, 1000, run.key);
      const noise = normal(gpu, [3, 1, 8, 8], run.key, SITE_NOISE);
      const xt = qSampleRaw(gpu, run.inputs.images, t, noise, run.schedule);
      const opts = { train: true, rngKey: run.key, siteBase: SITE_DROPOUT };
      const pred = noGrad(() => unetForward(run.model, run.config, constant(xt), t, opts)).value;
      return Promise.all([gpu.read(pred), gpu.read(noise), gpu.read(t)]);
    });
    if (new Set(t).size < 2) throw new Error(`suspicious timesteps ${t} (seed=${s})`);
    scope(() => recordDdpmStep(run, batch));
    const r = await run.stats.read();
    assertClose([r.meanLoss], [mseRef(pred, noise)], 1e-5, `ddpm loss seed=${s}`);
  } finally {
    disposeDdpmRun(run);
  }
});

const TINY_CNN_8: ClassifierModel = {
  arch: "cnn",
  config: { image_size: 8, in_channels: 1, channels: [4, 4, 8], hidden: 8, classes: 10, norm_groups: 0 },
};

/** Mean cross-entropy of logits [n, k] in float64. */
function crossEntropyRef(z: Float32Array, labels: ArrayLike<number>, k: number): number {
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = Array.from(z.subarray(i * k, (i + 1) * k));
    const m = Math.max(...row);
    total += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[labels[i]];
  }
  return total / labels.length;
}

Deno.test("classifier step: its loss is the mean cross-entropy (float64); no readback, one upload", async () => {
  const s = freshSeed();
  const settings = classifierDefaults("unused", { batchSize: 5, seed: s });
  const run = createClassifierRun(gpu, settings, TINY_CNN_8, synthetic(12, 1, 8, 8, s));
  let uploads = 0;
  const upload = gpu.upload.bind(gpu);
  try {
    seekClassifierRun(run, 0);
    const batch = run.batcher.atStep(1);
    const logits = await scope(() => {
      run.inputs.upload(batch);
      const out = noGrad(() =>
        classifierForward(run.store, run.model, constant(run.inputs.images), {})
      ).value;
      return gpu.read(out);
    });
    const reads = gpu.stats.readbacks;
    gpu.upload = (t, d) => (uploads++, upload(t, d));
    scope(() => recordClassifierStep(run, batch));
    gpu.upload = upload;
    if (gpu.stats.readbacks !== reads || uploads !== 1) throw new Error(`${uploads} uploads, reads ${reads}`);
    const r = await run.stats.read();
    assertClose([r.meanLoss], [crossEntropyRef(logits, batch.labels, 10)], 1e-5, `cross-entropy seed=${s}`);
  } finally {
    gpu.upload = upload;
    disposeClassifierRun(run);
  }
});

Deno.test("evaluateAccuracy: counts as a host argmax does, padded last batch, one readback", async () => {
  const s = freshSeed();
  const data = synthetic(13, 1, 8, 8, s);
  const store = createClassifier(gpu, TINY_CNN_8, s);
  try {
    const x = Float32Array.from(data.images, (v) => v / 255);
    const logits = await scope(() =>
      gpu.read(
        noGrad(() => classifierForward(store, TINY_CNN_8, constant(gpu.tensor(x, [13, 1, 8, 8])), {})).value,
      )
    );
    let correct = 0;
    for (let i = 0; i < 13; i++) {
      const row = Array.from(logits.subarray(i * 10, i * 10 + 10));
      if (row.indexOf(Math.max(...row)) === data.labels[i]) correct++;
    }
    const reads = gpu.stats.readbacks;
    const acc = await evaluateAccuracy(gpu, store, TINY_CNN_8, data, 5);
    if (gpu.stats.readbacks - reads !== 1) throw new Error(`${gpu.stats.readbacks - reads} readbacks`);
    if (acc.correct !== correct || acc.n !== 13) {
      throw new Error(`${JSON.stringify(acc)} vs ${correct} (seed=${s})`);
    }
    const part = await evaluateAccuracy(gpu, store, TINY_CNN_8, data, 5, 6);
    if (part.n !== 6) throw new Error(`limit: ${JSON.stringify(part)}`);
  } finally {
    store.dispose();
  }
});
