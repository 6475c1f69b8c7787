/**
 * `addt eval-clean`: clean accuracy of the classifier alone and behind the diffusion purifier (issue 3's
 * quality table). For each (sampler, t*) every test image in [0, 1] is mapped to [-1, 1], diffused to t*,
 * denoised by DP_DDPM (DDPM ancestral, fixed_large) or DP_DDIM (eta 0) on `nfe` strides, clamped to [0, 1]
 * and classified. Accuracies carry 95% Wilson intervals.
 *
 * Randomness: image i of the dataset gets, in each setting, the noise of the key (seed, stream of the
 * setting, counter i): forward noise at site 0, reverse step k at site k + 1, exactly drawNoiseSet's layout
 * for that key (ops/image_noise.ts draws a whole batch in one dispatch per site). So the numbers depend
 * on neither the batch boundaries nor the other settings in the run, and a stopped run resumes exactly:
 * progress.json in --out holds each setting's counts after every batch.
 *
 * Work per batch and setting: one upload of the images, the purifier's dispatches, one readback of the
 * [N] correct-flags vector.
 */
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { getGpu, type Gpu } from "../gpu/context.ts";
import { scopeAsync } from "../tensor.ts";
import { constant, noGrad } from "../autodiff/var.ts";
import { rngKey } from "../ops/random.ts";
import { perImageNormal } from "../ops/image_noise.ts";
import { correctFlags } from "../attack/losses.ts";
import type { ParamStore } from "../nn/params.ts";
import { loadSplits } from "../train/data.ts";
import { DATASET_SHAPES, type DatasetName } from "../train/settings.ts";
import { loadClassifierRun, loadDdpmRun } from "../train/run_folder.ts";
import { shortDuration } from "../train/progress.ts";
import { toFloat } from "../data/dataset.ts";
import { type EpsModel, type NoiseSet, type SamplerKind, type Schedule } from "../diffusion/sampler.ts";
import type { Classifier } from "../defense/networks.ts";
import { DiffusionPurifier } from "../defense/purifier.ts";
import { attempt, readKeyedProgress } from "../io/files.ts";
import { writeFileAtomic } from "../io/safetensors.ts";
import { EvalConfigError } from "./config.ts";
import { gitCommit } from "./run.ts";
import { type AccuracyStat, accuracyStat } from "./stats.ts";

export const CLEAN_SAMPLERS = ["ddpm", "ddim"] as const;
export const CLEAN_REPORT_FORMAT = "addt-eval-clean/1";
const PROGRESS_FORMAT = "addt-eval-clean-progress/1";

export interface CleanConfig {
  dataset: DatasetName;
  dataDir: string | null;
  /** Classifier training run folder (run.json, model.safetensors). */
  classifier: string;
  /** DDPM training run folder (run.json, ema.safetensors and/or model.safetensors). */
  ddpm: string;
  /** The DDPM's EMA weights when present (default true). */
  ema: boolean;
  tStars: number[];
  samplers: SamplerKind[];
  /** Reverse strides from t* to 0 (the UNet runs nfe + 1 times per image). */
  nfe: number;
  n: number;
  /** First test image. */
  offset: number;
  batchSize: number;
  seed: number;
  /** Folder for report.json, report.md and progress.json (null: print only, no resume). */
  out: string | null;
}

/**
 * Images purified at once. On llvmpipe the throughput does not grow with the batch (measured with the
 * shipped MNIST pair, DDIM t* = 100, NFE 2: 12.4 / 11.8 / 12.1 images/s at 100 / 250 / 500), while GPU
 * memory does (389 / 927 / 1848 MiB high-water), so 100.
 */
export const DEFAULT_CLEAN_BATCH = 100;

export function cleanDefaults(overrides: Partial<CleanConfig> = {}): CleanConfig {
  return {
    dataset: "mnist",
    dataDir: null,
    classifier: "",
    ddpm: "",
    ema: true,
    tStars: [100, 200, 300, 400],
    samplers: ["ddpm", "ddim"],
    nfe: 10,
    n: 10000,
    offset: 0,
    batchSize: DEFAULT_CLEAN_BATCH,
    seed: 0,
    out: null,
    ...overrides,
  };
}

const isCount = (v: number, min: number) => Number.isInteger(v) && v >= min;

/** Checks that need no files (t* < T is checked once the DDPM's schedule is known). */
export function validateCleanConfig(c: CleanConfig): E.Either<EvalConfigError, CleanConfig> {
  const bad = (m: string) => E.left(new EvalConfigError(m));
  if (!c.classifier) return bad("--classifier is required (a classifier training run folder)");
  if (!c.ddpm) return bad("--ddpm is required (a DDPM training run folder)");
  if (c.samplers.length === 0) return bad("--sampler: give at least one of ddpm, ddim");
  const unknown = c.samplers.find((s) => !CLEAN_SAMPLERS.includes(s));
  if (unknown) return bad(`--sampler: unknown sampler "${unknown}" (ddpm | ddim)`);
  if (!isCount(c.nfe, 1) || c.nfe >= 2 ** 15) {
    return bad(`--nfe must be an integer in [1, 32767], got ${c.nfe}`);
  }
  if (c.tStars.length === 0) return bad("--t-star: give at least one diffusion time");
  for (const t of c.tStars) {
    if (!isCount(t, 1) || t >= 2 ** 16) return bad(`--t-star ${t} must be an integer in [1, 65535]`);
    if (t % c.nfe !== 0) {
      return bad(
        `--t-star ${t} is not a multiple of --nfe ${c.nfe} (the reverse process takes nfe equal strides)`,
      );
    }
  }
  if (!isCount(c.n, 1)) return bad(`--n must be a positive integer, got ${c.n}`);
  if (!isCount(c.offset, 0)) return bad(`--offset must be a non-negative integer, got ${c.offset}`);
  if (!isCount(c.batchSize, 1)) return bad(`--batch-size must be a positive integer, got ${c.batchSize}`);
  if (!Number.isSafeInteger(c.seed) || c.seed < 0) return bad(`--seed must be a non-negative integer`);
  // duplicates would evaluate a setting twice under one progress entry
  return E.right({ ...c, tStars: [...new Set(c.tStars)], samplers: [...new Set(c.samplers)] });
}

// ------------------------------------------------------------------ settings and their noise

/** A row of the table: the classifier alone, or behind one purifier setting. */
export interface CleanPart {
  /** Key in progress.json: "classifier" or "ddpm:100". */
  id: string;
  label: string;
  sampler: SamplerKind | null;
  tStar: number | null;
}

export function cleanParts(c: CleanConfig): CleanPart[] {
  const parts: CleanPart[] = [{ id: "classifier", label: "classifier alone", sampler: null, tStar: null }];
  for (const sampler of c.samplers) {
    for (const tStar of c.tStars) {
      parts.push({ id: `${sampler}:${tStar}`, label: `DP_${sampler.toUpperCase()}`, sampler, tStar });
    }
  }
  return parts;
}

/** The Philox stream of a purifier setting: sampler bit, nfe (15 bits), t* (16 bits). A setting's noise
 * is thus fixed by the seed and the setting itself, whatever else the run evaluates. */
export function settingStream(sampler: SamplerKind, tStar: number, nfe: number): number {
  return ((sampler === "ddim" ? 1 : 0) * 2 ** 31 + nfe * 2 ** 16 + tStar) >>> 0;
}

/**
 * The purifier noise of dataset images [first, first + shape[0]) in one setting: row i equals
 * drawNoiseSet(gpu, [1, ...], nSteps, rngKey(seed, stream, first + i), { sampler }) row for row.
 * Tensors of the caller's scope.
 */
export function cleanNoise(
  gpu: Gpu,
  shape: readonly number[],
  first: number,
  seed: number,
  stream: number,
  purifier: { nSteps: number; reverseStochastic: boolean },
): NoiseSet {
  const key = rngKey(gpu, seed, stream, first);
  const forward = perImageNormal(gpu, shape, key, 0);
  const reverse = purifier.reverseStochastic
    ? Array.from({ length: purifier.nSteps }, (_, k) => perImageNormal(gpu, shape, key, k + 1))
    : [];
  return { forward, reverse };
}

// ------------------------------------------------------------------ progress (resume)

export interface PartProgress {
  /** Images done, from the first. */
  done: number;
  correct: number;
  /** Dataset indices of the misclassified images. */
  wrong: number[];
  /** Compute seconds, summed over runs. */
  seconds: number;
}

interface ProgressFile {
  format: string;
  /** What the counts depend on; progress with another key is not reused. */
  key: string;
  parts: Record<string, PartProgress>;
}

/** Everything the counts depend on except n (a longer run reuses a shorter one's first images). */
function progressKey(c: CleanConfig, fingerprint: unknown): string {
  const { dataset, dataDir, classifier, ddpm, ema, nfe, offset, seed } = c;
  return JSON.stringify({ dataset, dataDir, classifier, ddpm, ema, nfe, offset, seed, fingerprint });
}

async function readProgress(path: string, key: string, say: (l: string) => void): Promise<ProgressFile> {
  const valid = (p: ProgressFile) => !!p.parts && typeof p.parts === "object";
  const saved = await readKeyedProgress(path, { format: PROGRESS_FORMAT, key }, valid, "eval-clean", say);
  return saved ?? { format: PROGRESS_FORMAT, key, parts: {} };
}

// ------------------------------------------------------------------ the evaluation

export interface CleanInputs {
  gpu: Gpu;
  classifier: Classifier;
  eps: EpsModel;
  schedule: Schedule;
  /** The n evaluated images in [0, 1], flat NCHW: images[i] is dataset image config.offset + i. */
  images: Float32Array;
  labels: ArrayLike<number>;
  imageShape: readonly [number, number, number];
  /** Identifies the weights (files, sizes, times) so that changed weights never resume old counts. */
  fingerprint?: unknown;
}

export interface CleanHooks {
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
  /** The commit to record (default: asked from git). */
  commit?: string;
  /** After each batch has been counted and saved (tests stop a run here). */
  afterBatch?: (partId: string, done: number) => void | Promise<void>;
}

export interface CleanRow {
  id: string;
  label: string;
  sampler: SamplerKind | null;
  tStar: number | null;
  accuracy: AccuracyStat;
  wrong: number[];
  seconds: number;
  imagesPerSecond: number;
}

export interface CleanReport {
  format: string;
  config: CleanConfig;
  seed: number;
  commit: string;
  adapter: { description: string; isSoftware: boolean; backend: string };
  started: string;
  /** This invocation's wall time (a resumed run counts only its own). */
  wallSeconds: number;
  /** Images whose results came from progress.json instead of being computed now. */
  resumedImages: number;
  T: number;
  modelCallsPerImage: number;
  gpuHighWaterBytes: number;
  rows: CleanRow[];
}

/** Correct flags (1/0) of images [start, start + count): one upload, the dispatches, one readback. */
function batchFlags(
  inputs: CleanInputs,
  purifier: DiffusionPurifier | null,
  noise: (shape: readonly number[]) => NoiseSet,
  start: number,
  count: number,
): Promise<Float32Array> {
  const { gpu, imageShape } = inputs, per = imageShape[0] * imageShape[1] * imageShape[2];
  return scopeAsync(async () => {
    const x = gpu.tensor(inputs.images.subarray(start * per, (start + count) * per), [count, ...imageShape]);
    const y = gpu.tensor(Uint32Array.from({ length: count }, (_, i) => inputs.labels[start + i]));
    const correct = noGrad(() => {
      const input = purifier ? purifier.purify(constant(x), noise(x.shape)) : constant(x);
      return correctFlags(gpu, inputs.classifier(input).value, y);
    });
    return await gpu.read(correct);
  });
}

export async function evaluateClean(
  inputs: CleanInputs,
  config: CleanConfig,
  hooks: CleanHooks = {},
): Promise<CleanReport> {
  const { gpu, imageShape, schedule } = inputs;
  const c = config, per = imageShape[0] * imageShape[1] * imageShape[2];
  if (inputs.images.length !== c.n * per || inputs.labels.length !== c.n) {
    throw new EvalConfigError(`eval-clean: ${inputs.images.length / per} images for n = ${c.n}`);
  }
  for (const t of c.tStars) {
    if (t >= schedule.T) {
      throw new EvalConfigError(`--t-star ${t} must be below the DDPM's T = ${schedule.T}`);
    }
  }
  const say = hooks.progress ?? ((l: string) => console.error(l));
  const started = new Date(), t0 = performance.now();
  const progressPath = c.out ? `${c.out}/progress.json` : null;
  if (c.out) await Deno.mkdir(c.out, { recursive: true });
  const key = progressKey(c, inputs.fingerprint ?? null);
  const state = progressPath ? await readProgress(progressPath, key, say) : { format: "", key, parts: {} };
  const parts = cleanParts(c);
  const fresh = (): PartProgress => ({ done: 0, correct: 0, wrong: [], seconds: 0 });
  const progressOf = (id: string): PartProgress => {
    const p = state.parts[id];
    // a shorter earlier run is a prefix of this one; a longer one is not reusable as counts of n
    if (!p || p.done > c.n) return state.parts[id] = fresh();
    return p;
  };
  const resumedImages = parts.reduce((s, p) => s + progressOf(p.id).done, 0);
  if (resumedImages > 0) {
    say(
      `eval-clean: resuming from ${progressPath}: ${
        parts.map((p) => `${p.id} ${progressOf(p.id).done}`).join(", ")
      }`,
    );
  }
  await gpu.sync();
  gpu.pool.resetHighWater();
  const purifierOf = (p: CleanPart) =>
    p.sampler === null ? null : new DiffusionPurifier(inputs.eps, {
      tStar: p.tStar!,
      nfe: c.nfe,
      sampler: p.sampler,
      schedule,
      checkpoint: false,
    });
  // ETA: purified images still to do at this invocation's measured rate
  const purifiedLeft = () =>
    parts.filter((p) => p.sampler).reduce((s, p) => s + c.n - progressOf(p.id).done, 0);
  let purifiedSeconds = 0, purifiedImages = 0;

  for (const part of parts) {
    const st = progressOf(part.id);
    const purifier = purifierOf(part);
    const stream = part.sampler ? settingStream(part.sampler, part.tStar!, c.nfe) : 0;
    while (st.done < c.n) {
      const start = st.done, count = Math.min(c.batchSize, c.n - start);
      const tb = performance.now();
      const first = c.offset + start;
      const noise = (shape: readonly number[]) => cleanNoise(gpu, shape, first, c.seed, stream, purifier!);
      const flags = await batchFlags(inputs, purifier, noise, start, count);
      const seconds = (performance.now() - tb) / 1000;
      flags.forEach((f, i) => {
        if (f === 1) st.correct++;
        else st.wrong.push(first + i);
      });
      st.done += count;
      st.seconds += seconds;
      if (progressPath) await writeFileAtomic(progressPath, JSON.stringify(state) + "\n");
      if (purifier) {
        purifiedSeconds += seconds;
        purifiedImages += count;
      }
      const eta = purifiedImages > 0 ? purifiedLeft() * purifiedSeconds / purifiedImages : NaN;
      const name = part.tStar === null ? part.label : `${part.label} t*=${part.tStar}`;
      say(
        `eval-clean: ${name} ${st.done}/${c.n} (${(100 * st.correct / st.done).toFixed(2)}% so far), ` +
          `batch ${seconds.toFixed(1)} s, ${(count / seconds).toFixed(1)} images/s; ` +
          `elapsed ${shortDuration((performance.now() - t0) / 1000)}, ETA ${
            Number.isNaN(eta) ? "after the first purified batch" : shortDuration(eta)
          }`,
      );
      await hooks.afterBatch?.(part.id, st.done);
    }
  }
  await gpu.sync();
  const rows: CleanRow[] = parts.map((p) => {
    const st = progressOf(p.id);
    return {
      id: p.id,
      label: p.label,
      sampler: p.sampler,
      tStar: p.tStar,
      accuracy: accuracyStat(st.correct, st.done),
      wrong: st.wrong,
      seconds: st.seconds,
      imagesPerSecond: st.seconds > 0 ? st.done / st.seconds : 0,
    };
  });
  return {
    format: CLEAN_REPORT_FORMAT,
    config: c,
    seed: c.seed,
    commit: hooks.commit ?? await gitCommit(),
    adapter: {
      description: gpu.adapter.description,
      isSoftware: gpu.adapter.isSoftware,
      backend: gpu.adapter.backend,
    },
    started: started.toISOString(),
    wallSeconds: (performance.now() - t0) / 1000,
    resumedImages,
    T: schedule.T,
    modelCallsPerImage: c.nfe + 1,
    gpuHighWaterBytes: gpu.pool.highWater,
    rows,
  };
}

// ------------------------------------------------------------------ report

const pct = (v: number) => (100 * v).toFixed(2);

export function cleanMarkdown(r: CleanReport): string {
  const c = r.config;
  const lines = [
    `## Purified clean accuracy (${c.dataset})`,
    "",
    `${c.n} test images (#${c.offset}..${
      c.offset + c.n - 1
    }), NFE ${c.nfe} (${r.modelCallsPerImage} UNet calls per ` +
    `image), seed ${r.seed}, DDPM ${c.ddpm}${
      c.ema ? " (EMA weights when present)" : " (raw weights)"
    }, classifier ` +
    `${c.classifier}; commit ${r.commit}; ${r.adapter.description}${
      r.adapter.isSoftware ? " (software)" : ""
    }; ` +
    `${r.wallSeconds.toFixed(1)} s wall` +
    (r.resumedImages > 0 ? ` (resumed: ${r.resumedImages} images from progress.json)` : "") +
    ". DP_DDPM: DDPM ancestral, fixed_large; DP_DDIM: eta 0. 95% Wilson intervals.",
    "",
    "| setting | t* | accuracy | 95% CI | correct / n | seconds | images/s |",
    "|---|---|---|---|---|---|---|",
    ...r.rows.map((row) => {
      const a = row.accuracy;
      const t = row.tStar === null ? "-" : `${row.tStar} (${+(row.tStar / r.T).toFixed(3)} T)`;
      return `| ${row.label} | ${t} | ${pct(a.accuracy)}% | [${pct(a.ci95[0])}, ${pct(a.ci95[1])}] | ` +
        `${a.correct} / ${a.n} | ${row.seconds.toFixed(1)} | ${row.imagesPerSecond.toFixed(1)} |`;
    }),
    "",
  ];
  return lines.join("\n");
}

/** report.json and report.md into `out`, atomically. */
export async function writeCleanReport(r: CleanReport, out: string): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  await writeFileAtomic(`${out}/report.json`, JSON.stringify(r, null, 2) + "\n");
  await writeFileAtomic(`${out}/report.md`, cleanMarkdown(r));
}

// ------------------------------------------------------------------ the pipeline

async function loadAndEvaluate(
  c: CleanConfig,
  hooks: CleanHooks,
  stores: ParamStore[],
): Promise<CleanReport> {
  const gpu = await getGpu();
  const cls = await loadClassifierRun(gpu, c.classifier);
  stores.push(cls.store);
  const ddpm = await loadDdpmRun(gpu, c.ddpm, c.ema);
  stores.push(ddpm.store);
  const [ch, h, w] = DATASET_SHAPES[c.dataset];
  for (const [what, ds] of [["classifier", cls.settings.dataset], ["DDPM", ddpm.settings.dataset]] as const) {
    if (ds !== c.dataset) {
      throw new EvalConfigError(`the ${what} was trained on ${ds}, not --dataset ${c.dataset}`);
    }
  }
  const u = ddpm.config;
  if (u.in_channels !== ch || u.sample_size !== h || h !== w) {
    throw new EvalConfigError(
      `the DDPM takes ${u.in_channels}x${u.sample_size}x${u.sample_size}, not ${c.dataset}'s ${ch}x${h}x${w}`,
    );
  }
  const maxT = Math.max(...c.tStars);
  if (maxT >= ddpm.schedule.T) {
    throw new EvalConfigError(`--t-star ${maxT} must be below the DDPM's T = ${ddpm.schedule.T}`);
  }
  const { test } = await loadSplits(c.dataset, c.dataDir, ["test"]);
  const d = test!;
  if (c.offset + c.n > d.n) {
    throw new EvalConfigError(
      `${d.name} has ${d.n} images; --offset ${c.offset} --n ${c.n} asks for ${c.offset + c.n}`,
    );
  }
  const per = d.c * d.h * d.w;
  const images = toFloat(d.images.subarray(c.offset * per, (c.offset + c.n) * per), "unit");
  const labels = Uint32Array.from(d.labels.subarray(c.offset, c.offset + c.n));
  return await evaluateClean(
    {
      gpu,
      classifier: cls.classifier,
      eps: ddpm.eps,
      schedule: ddpm.schedule,
      images,
      labels,
      imageShape: [d.c, d.h, d.w],
      fingerprint: { classifier: cls.weights, ddpm: ddpm.weights },
    },
    c,
    hooks,
  );
}

/** The whole command: validate, load the run folders and the test split, evaluate, write the report. */
export function runCleanPipeline(
  config: CleanConfig,
  hooks: CleanHooks = {},
): TE.TaskEither<Error, CleanReport> {
  const stores: ParamStore[] = [];
  const release = () => stores.splice(0).forEach((s) => s.dispose());
  return pipe(
    TE.fromEither(validateCleanConfig(config)),
    TE.chainW((c) => attempt(() => loadAndEvaluate(c, hooks, stores))),
    TE.chainFirst((r) =>
      r.config.out ? attempt(() => writeCleanReport(r, r.config.out!)) : TE.right(undefined)
    ),
    TE.bimap((e) => (release(), e), (r) => (release(), r)),
  );
}
