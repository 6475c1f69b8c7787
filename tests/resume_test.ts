/**
 * Exact resume: a run killed with SIGKILL after a checkpoint and resumed with --resume ends with files
 * byte-identical (weights, EMA weights, optimizer state) to an uninterrupted run of the same length.
 * The killed leg runs the real command line (`deno run -A tasks/addt.ts train-ddpm ...`) in a subprocess;
 * the uninterrupted run and the resumption run in this process through the same pipeline.
 */
import * as E from "fp-ts/Either.js";
import { freshSeed } from "./util.ts";
import { readManifest } from "../src/train/checkpoint.ts";
import { trainClassifier, trainDdpm } from "../src/train/pipeline.ts";
import { classifierDefaults, ddpmDefaults, type TrainSettings } from "../src/train/settings.ts";
import type { TrainReport } from "../src/train/pipeline.ts";

const root = new URL("..", import.meta.url).pathname;
const STEPS = 12;

/** A small UNet for 28x28 MNIST: two levels, attention at 14x14, dropout on (exercises the RNG). */
const TINY_UNET = {
  base: "mnist",
  block_out_channels: [8, 8],
  down_block_types: ["DownBlock2D", "AttnDownBlock2D"],
  up_block_types: ["AttnUpBlock2D", "UpBlock2D"],
  norm_num_groups: 4,
};
const TINY_CNN = { base: "cnn", channels: [4, 8, 8], hidden: 16 };

/** The flags of a run, as the command line spells them, and the same run as settings. */
function run(kind: "ddpm" | "classifier", out: string, config: string, seed: number) {
  const flags: Record<string, string> = {
    "--out": out,
    "--dataset": "mnist",
    "--config": config,
    "--steps": String(STEPS),
    "--batch-size": "4",
    "--lr": "0.001",
    "--warmup": "2",
    "--seed": String(seed),
    "--log-every": "2",
    "--checkpoint-every": "2",
  };
  const common = {
    dataset: "mnist",
    config,
    steps: STEPS,
    epochs: null,
    batchSize: 4,
    lr: 1e-3,
    warmup: 2,
    seed,
  };
  const intervals = { logEvery: 2, checkpointEvery: 2 };
  const settings: TrainSettings = kind === "ddpm"
    ? ddpmDefaults(out, { ...common, ...intervals } as object)
    : classifierDefaults(out, { ...common, ...intervals, evalBatchSize: 1000 } as object);
  return { args: [`train-${kind}`, ...Object.entries(flags).flat()], settings };
}

async function train(s: TrainSettings): Promise<TrainReport> {
  const quiet = { progress: { quiet: true } };
  const r = s.kind === "ddpm" ? await trainDdpm(s, quiet)() : await trainClassifier(s, quiet)();
  if (E.isLeft(r)) throw r.left;
  return r.right;
}

/** Start the command line, SIGKILL it once a checkpoint exists, and return the step it was killed at. */
async function killAfterCheckpoint(args: string[], out: string): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tasks/addt.ts", ...args],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderrText = new Response(child.stderr).text();
  const deadline = Date.now() + 120_000;
  let step = 0;
  while (Date.now() < deadline) {
    step = (await readManifest(out).catch(() => null))?.step ?? 0;
    if (step >= 2) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  const status = await child.status;
  const stderr = await stderrText;
  if (status.signal !== "SIGKILL") throw new Error(`the run was not killed (exit ${status.code}): ${stderr}`);
  const m = await readManifest(out);
  if (!m || m.step < 2) throw new Error(`no checkpoint before the kill: ${stderr}`);
  if (m.step >= STEPS) {
    throw new Error(`the run reached step ${m.step} of ${STEPS} before the kill: nothing to resume`);
  }
  return m.step;
}

async function sameBytes(a: string, b: string, what: string): Promise<void> {
  const [x, y] = [await Deno.readFile(a), await Deno.readFile(b)];
  if (x.length !== y.length || x.some((v, i) => v !== y[i])) throw new Error(`${what}: ${a} and ${b} differ`);
}

async function resumeTest(kind: "ddpm" | "classifier", config: object): Promise<void> {
  const seed = freshSeed(), dir = await Deno.makeTempDir({ prefix: `addt_resume_${kind}_` });
  try {
    const configFile = `${dir}/config.json`;
    await Deno.writeTextFile(configFile, JSON.stringify(config));
    const whole = run(kind, `${dir}/whole`, configFile, seed);
    const killed = run(kind, `${dir}/killed`, configFile, seed);

    const ref = await train(whole.settings);
    const at = await killAfterCheckpoint(killed.args, `${dir}/killed`);
    const resumed = await train({ ...killed.settings, resume: true });
    if (resumed.startStep !== at || resumed.finalStep !== STEPS) {
      throw new Error(`resumed ${resumed.startStep}..${resumed.finalStep}, killed at ${at} (seed=${seed})`);
    }
    const last = ref.manifest!;
    const files = [last.files.model, last.files.optimizer, ...(last.files.ema ? [last.files.ema] : [])];
    for (const f of files) {
      await sameBytes(`${dir}/whole/${f}`, `${dir}/killed/${f}`, `${kind} killed at ${at}, seed=${seed}`);
    }
    await sameBytes(
      `${dir}/whole/model.safetensors`,
      `${dir}/killed/model.safetensors`,
      `final weights seed=${seed}`,
    );
    if (kind === "classifier" && ref.testAccuracy !== resumed.testAccuracy) {
      throw new Error(`test accuracy ${ref.testAccuracy} vs ${resumed.testAccuracy} (seed=${seed})`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("resume: a DDPM run killed with SIGKILL and resumed ends bit-identical", async () => {
  await resumeTest("ddpm", TINY_UNET);
});

Deno.test("resume: a classifier run killed with SIGKILL and resumed ends bit-identical", async () => {
  await resumeTest("classifier", TINY_CNN);
});
