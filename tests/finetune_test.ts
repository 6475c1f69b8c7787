/**
 * The fine-tuning pipeline and `addt finetune` on tiny 28x28 models and a 16-image MNIST-format folder:
 * a run killed after a checkpoint and resumed ends bit-identical to an uninterrupted one, its folder is a DDPM
 * run folder (run.json, ema.safetensors and model.safetensors load as `addt eval --ddpm` loads them), and
 * user errors (missing or incompatible folders, bad flags) give one line and exit 2.
 */
import * as E from "fp-ts/Either.js";
import { freshSeed, randArray, testGpu } from "./util.ts";
import { createUNet, MNIST_UNET, type UNetConfig } from "../src/nn/unet.ts";
import { MNIST_CNN } from "../src/nn/classifier.ts";
import { loadParams, saveParams } from "../src/nn/model_io.ts";
import { type ClassifierModel, createClassifier } from "../src/train/models.ts";
import { classifierDefaults, ddpmDefaults } from "../src/train/settings.ts";
import { FORMAT, readManifest } from "../src/train/checkpoint.ts";
import { IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC } from "../src/data/idx.ts";
import { finetuneDefaults, type FinetuneSettings } from "../src/addt/settings.ts";
import { type FinetuneReport, runFinetune } from "../src/addt/pipeline.ts";
import type { FlowOptions } from "../src/train/pipeline.ts";
import { main } from "../src/cli/program.ts";

const gpu = await testGpu();

/** The MNIST UNet shrunk to one level of 8 channels (few kernels to compile), dropout on. */
const UNET: UNetConfig = {
  ...MNIST_UNET,
  block_out_channels: [8],
  down_block_types: ["DownBlock2D"],
  up_block_types: ["UpBlock2D"],
  norm_num_groups: 4,
};
const CNN: ClassifierModel = { arch: "cnn", config: { ...MNIST_CNN, channels: [4, 8, 8], hidden: 16 } };

/** An IDX file: magic, dimensions, bytes. */
function idx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const head = new DataView(new ArrayBuffer(4 + 4 * dims.length));
  head.setUint32(0, magic);
  dims.forEach((d, i) => head.setUint32(4 + 4 * i, d));
  const out = new Uint8Array(head.byteLength + data.length);
  out.set(new Uint8Array(head.buffer));
  out.set(data, head.byteLength);
  return out;
}

interface Fixture {
  dir: string;
  data: string;
  ddpm: string;
  classifier: string;
}

/** A temp folder with a 16-image MNIST train split, a DDPM run folder and a classifier run folder (random
 * weights: the pipeline only needs their files). */
async function fixture(seed: number): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "addt_finetune_test_" });
  const f = { dir, data: `${dir}/mnist`, ddpm: `${dir}/ddpm`, classifier: `${dir}/cls` };
  for (const d of [f.data, f.ddpm, f.classifier]) await Deno.mkdir(d);
  const n = 16;
  const pixels = Uint8Array.from(randArray(n * 784, seed, 0, 256), Math.floor);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  await Deno.writeFile(`${f.data}/train-images-idx3-ubyte`, idx(IDX_IMAGES_MAGIC, [n, 28, 28], pixels));
  await Deno.writeFile(`${f.data}/train-labels-idx1-ubyte`, idx(IDX_LABELS_MAGIC, [n], labels));
  const runJson = (settings: object, model: object) => JSON.stringify({ settings, model }, null, 2);
  await Deno.writeTextFile(`${f.ddpm}/run.json`, runJson(ddpmDefaults(f.ddpm, { seed }), UNET));
  const unet = createUNet(gpu, UNET, seed);
  await saveParams(unet, `${f.ddpm}/ema.safetensors`);
  unet.dispose();
  await Deno.writeTextFile(`${f.classifier}/run.json`, runJson(classifierDefaults(f.classifier), CNN));
  const cls = createClassifier(gpu, CNN, seed + 1);
  await saveParams(cls, `${f.classifier}/model.safetensors`);
  cls.dispose();
  return f;
}

function settingsFor(f: Fixture, out: string, seed: number, over: Partial<FinetuneSettings> = {}) {
  return finetuneDefaults(out, {
    ddpm: f.ddpm,
    classifier: f.classifier,
    dataDir: f.data,
    steps: 4,
    batchSize: 2,
    cgpoSteps: 2,
    lr: 1e-3,
    warmup: 2,
    seed,
    logEvery: 2,
    checkpointEvery: 2,
    ...over,
  });
}

async function finetune(s: FinetuneSettings, opts: FlowOptions = {}): Promise<FinetuneReport> {
  const r = await runFinetune(s, { progress: { quiet: true }, ...opts })();
  if (E.isLeft(r)) throw r.left;
  return r.right;
}

async function sameBytes(a: string, b: string, what: string): Promise<void> {
  const [x, y] = [await Deno.readFile(a), await Deno.readFile(b)];
  if (x.length !== y.length || x.some((v, i) => v !== y[i])) throw new Error(`${what}: ${a} and ${b} differ`);
}

Deno.test("finetune: resumed after a simulated kill, bit-identical; the folder is a DDPM run folder", async () => {
  const seed = freshSeed(), f = await fixture(seed);
  try {
    const whole = await finetune(settingsFor(f, `${f.dir}/whole`, seed));
    if (whole.finalStep !== 4 || whole.method !== "addt") throw new Error(JSON.stringify(whole));

    // the "kill": the process dies after step 3 (checkpoint at step 2); nothing else is written
    const killedOut = `${f.dir}/killed`;
    const kill = {
      hooks: {
        afterStep: (s: number) => {
          if (s === 2) throw new Error("simulated kill");
        },
      },
    };
    const killed = await runFinetune(settingsFor(f, killedOut, seed), {
      progress: { quiet: true },
      ...kill,
    })();
    if (E.isRight(killed) || killed.left.message !== "simulated kill") {
      throw new Error("the kill did not happen");
    }
    if ((await readManifest(killedOut))?.step !== 2) {
      throw new Error("no checkpoint at step 2 before the kill");
    }
    const resumed = await finetune(settingsFor(f, killedOut, seed, { resume: true }));
    if (resumed.startStep !== 2 || resumed.finalStep !== 4) {
      throw new Error(`resumed ${resumed.startStep}..${resumed.finalStep} (seed=${seed})`);
    }
    const m = whole.manifest!;
    for (
      const file of [m.files.model, m.files.ema!, m.files.optimizer, "model.safetensors", "ema.safetensors"]
    ) {
      await sameBytes(`${f.dir}/whole/${file}`, `${killedOut}/${file}`, `seed=${seed}`);
    }

    // run.json: what `addt eval --ddpm` reads, plus the method, the source and the classifier
    const run = JSON.parse(await Deno.readTextFile(`${f.dir}/whole/run.json`));
    const s = run.settings;
    const want = { dataset: "mnist", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02, kind: "ddpm" };
    for (const [k, v] of Object.entries(want)) {
      if (s[k] !== v) throw new Error(`run.json settings.${k} = ${s[k]}, want ${v}`);
    }
    if (s.method !== "addt" || s.ddpm !== f.ddpm || s.classifier !== f.classifier || s.cgpoSteps !== 2) {
      throw new Error(`run.json method settings ${JSON.stringify(s)}`);
    }
    if (JSON.stringify(run.model) !== JSON.stringify(UNET)) {
      throw new Error(`run.json model ${JSON.stringify(run.model)}`);
    }
    if (run.source?.ddpm !== f.ddpm) throw new Error(`run.json source ${JSON.stringify(run.source)}`);
    const log = (await Deno.readTextFile(`${f.dir}/whole/train.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    if (log.map((l) => l.step).join() !== "2,4" || !log.every((l) => Number.isFinite(l.loss))) {
      throw new Error(`train.jsonl ${JSON.stringify(log)}`);
    }
    // the weights load into the UNet of run.json, as the evaluation loads them, and have moved
    const store = createUNet(gpu, run.model, 0);
    await loadParams(store, `${f.dir}/whole/model.safetensors`);
    const tuned = await store.toHost();
    await loadParams(store, `${f.ddpm}/ema.safetensors`);
    const source = await store.toHost();
    await loadParams(store, `${f.dir}/whole/ema.safetensors`);
    store.dispose();
    if ([...tuned].every(([k, v]) => v.every((x, i) => x === source.get(k)![i]))) {
      throw new Error(`the fine-tuned weights equal the source's (seed=${seed})`);
    }
  } finally {
    await Deno.remove(f.dir, { recursive: true });
  }
});

/** Run the CLI in this process; stdout and stderr lines captured. */
async function cli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [], err: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await main(args), out, err };
  } finally {
    [console.log, console.error] = [log, error];
  }
}

async function failsWithOneLine(args: string[], re: RegExp): Promise<void> {
  const r = await cli(["finetune", ...args]);
  const lines = r.err.flatMap((l) => l.split("\n")).filter((l) => l.trim() !== "");
  if (r.code !== 2 || lines.length !== 1 || !re.test(lines[0])) {
    throw new Error(`finetune ${args.join(" ")}: exit ${r.code}, stderr ${JSON.stringify(r.err)}`);
  }
}

Deno.test("addt finetune: a short run reports; missing or incompatible folders give one line, exit 2", async () => {
  const seed = freshSeed(), f = await fixture(seed);
  try {
    const base = ["--ddpm", f.ddpm, "--classifier", f.classifier, "--data-dir", f.data];
    const short = ["--steps", "2", "--batch-size", "2", "--cgpo-steps", "1", "--log-every", "1"];
    const out = `${f.dir}/out`;
    const r = await cli([
      "finetune",
      ...base,
      ...short,
      "--out",
      out,
      "--method",
      "mse",
      "--seed",
      String(seed),
    ]);
    if (r.code !== 0 || !r.out.some((l) => /^finetune mse: steps 0\.\.2/.test(l))) {
      throw new Error(`exit ${r.code}: ${JSON.stringify(r)}`);
    }
    const o = ["--out", `${f.dir}/o`];
    await failsWithOneLine([...o, "--classifier", f.classifier], /--ddpm is required/);
    await failsWithOneLine(
      [...o, "--ddpm", `${f.dir}/none`, "--classifier", f.classifier],
      /run\.json not found/,
    );
    await failsWithOneLine(
      [...o, "--ddpm", f.classifier, "--classifier", f.classifier],
      /classifier run, not a DDPM/,
    );
    await failsWithOneLine([...o, "--ddpm", f.ddpm], /--classifier is required for --method addt/);
    await failsWithOneLine(
      [...o, ...base, "--method", "pgd"],
      /--method expects addt \| clean \| mse \| linf/,
    );
    await failsWithOneLine(
      [...o, ...base, "--dataset", "fashion-mnist"],
      /trained on mnist, not fashion-mnist/,
    );
    await failsWithOneLine([...o, ...base, "--lambda-max", "2"], /--lambda-max must be in \[0, 1\]/);
    await failsWithOneLine(
      [...base, ...short, "--out", out, "--method", "mse"],
      /already holds a run.*--resume/,
    );
    await failsWithOneLine(
      [...base, "--out", out, "--method", "mse", "--resume", "--lr", "0.5"],
      /lr.*differs from the run being resumed/,
    );
    // a classifier of another dataset
    const fashion = `${f.dir}/fashion`;
    await Deno.mkdir(fashion);
    await Deno.writeTextFile(
      `${fashion}/run.json`,
      JSON.stringify({ settings: classifierDefaults(fashion, { dataset: "fashion-mnist" }), model: CNN }),
    );
    await failsWithOneLine(
      [...o, "--ddpm", f.ddpm, "--classifier", fashion, "--data-dir", f.data],
      /fashion-mnist, not mnist/,
    );
    // the folders are checked before anything is written
    if (await Deno.stat(`${f.dir}/o`).then(() => true, () => false)) {
      throw new Error("a failed start wrote --out");
    }
    // a DDPM training run cannot be resumed as a fine-tuning run
    await Deno.writeTextFile(
      `${f.ddpm}/manifest.json`,
      JSON.stringify({
        format: FORMAT,
        kind: "ddpm",
        step: 1,
        dir: "x",
        files: {},
        seed: 0,
        dataset: "mnist",
      }),
    );
    await failsWithOneLine(
      ["--out", f.ddpm, ...base, "--resume"],
      /holds a DDPM training run, not a fine-tuning run/,
    );
    // no EMA weights in the source
    await Deno.remove(`${f.ddpm}/ema.safetensors`);
    await failsWithOneLine([...o, ...base], /no ema\.safetensors/);
  } finally {
    await Deno.remove(f.dir, { recursive: true });
  }
});
