/**
 * The evaluation loop: the test images in batches (every attack setting on the same images), the
 * per-sample results gathered on the host, progress with an ETA after every batch, and the report.
 * Models and images come in as values, so tests run it on tiny networks and synthetic data.
 * With `hooks.resume` the batches done so far are saved after each one and a rerun continues from them
 * (src/eval/resume.ts); the report is then the same as an uninterrupted run's, wall time summed.
 */
import type { Gpu } from "../gpu/context.ts";
import { scopeAsync } from "../tensor.ts";
import type { Defense } from "../defense/defense.ts";
import type { EvalConfig } from "./config.ts";
import { attackLabel, EvalConfigError } from "./config.ts";
import { budgetsOf, evaluateBatch } from "./protocol.ts";
import { appendFlags, emptyFlags } from "./stats.ts";
import { shortDuration } from "../train/progress.ts";
import { buildReport, type EvalReport, type EvalResults } from "./report.ts";
import {
  type BatchRecord,
  EVAL_PROGRESS_FORMAT,
  type EvalProgress,
  readEvalProgress,
  reusableBatches,
  saveEvalProgress,
} from "./resume.ts";

export interface EvalInputs {
  gpu: Gpu;
  defense: Defense;
  /** Test images in [0, 1], NCHW, flat; the evaluation takes n of them from config.offset. */
  images: Float32Array;
  labels: ArrayLike<number>;
  /** [C, H, W] */
  imageShape: readonly [number, number, number];
}

export interface EvalHooks {
  /** One line per finished part of a batch (default: stderr). */
  progress?: (line: string) => void;
  /** The git commit to record (default: asked from git). */
  commit?: string;
  /** Save the finished batches to `path` after each one, and continue from there when `key` matches. */
  resume?: { path: string; key: string };
  /** After each batch computed (and saved) by this invocation; tests stop a run here. */
  afterBatch?: (batch: number, batches: number) => void | Promise<void>;
}

/** The current commit (with "-dirty" when the tree has changes), or "unknown" outside a git checkout. */
export async function gitCommit(): Promise<string> {
  const git = async (...args: string[]) => {
    const out = await new Deno.Command("git", {
      args: ["--no-optional-locks", ...args],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    if (!out.success) throw new Error("git failed");
    return new TextDecoder().decode(out.stdout).trim();
  };
  try {
    const head = await git("rev-parse", "HEAD");
    const dirty = (await git("status", "--porcelain", "--untracked-files=no")) !== "";
    return dirty ? `${head}-dirty` : head;
  } catch {
    return "unknown";
  }
}

/** The per-sample results of the batches, in order. */
function resultsOf(
  batches: readonly BatchRecord[],
  rows: number,
  budgets: readonly { norm: string; eps: number }[],
): EvalResults {
  const results: EvalResults = {
    clean: emptyFlags(),
    rows: Array.from({ length: rows }, () => ({ flags: emptyFlags(), seconds: 0 })),
    undefendedClean: emptyFlags(),
    undefendedRobust: budgets.map((b) => ({ ...b, flags: emptyFlags() })),
  };
  for (const r of batches) {
    appendFlags(results.clean, r.clean);
    r.rows.forEach((row, i) => {
      appendFlags(results.rows[i].flags, row.flags);
      results.rows[i].seconds += row.seconds;
    });
    appendFlags(results.undefendedClean, r.undefendedClean);
    r.undefendedRobust.forEach((f, i) => appendFlags(results.undefendedRobust[i].flags, f));
  }
  return results;
}

export async function evaluate(
  inputs: EvalInputs,
  config: EvalConfig,
  hooks: EvalHooks = {},
): Promise<EvalReport> {
  const { gpu, defense, imageShape } = inputs;
  const per = imageShape[0] * imageShape[1] * imageShape[2];
  const available = Math.floor(inputs.images.length / per);
  if (config.offset + config.n > available) {
    throw new EvalConfigError(
      `asked for images ${config.offset}..${config.offset + config.n - 1}, have ${available}`,
    );
  }
  const say = hooks.progress ?? ((line: string) => console.error(line));
  const t0 = performance.now();
  await gpu.sync();
  gpu.pool.resetHighWater();
  const budgets = config.checkUndefended ? budgetsOf(config.attacks) : [];
  const batches = Math.ceil(config.n / config.batchSize);
  const resume = hooks.resume;
  const saved = resume ? await readEvalProgress(resume.path, resume.key, config.attacks.length, say) : null;
  const progress: EvalProgress = {
    format: EVAL_PROGRESS_FORMAT,
    key: resume?.key ?? "",
    started: saved?.started ?? new Date().toISOString(),
    gpuHighWaterBytes: saved?.gpuHighWaterBytes ?? 0,
    batches: saved ? reusableBatches(saved.batches, config.n, config.batchSize) : [],
  };
  const resumed = progress.batches.length;
  if (resume && resumed > 0) {
    const images = progress.batches.reduce((s, r) => s + r.count, 0);
    say(`eval: resuming from ${resume.path}: ${resumed}/${batches} batches (${images} images) done`);
  }
  let lastMark = t0;
  for (let b = resumed; b < batches; b++) {
    const first = config.offset + b * config.batchSize;
    const count = Math.min(config.batchSize, config.offset + config.n - first);
    const partName = (row: number) =>
      row === -1 ? "clean" : row === -2 ? "undefended check" : attackLabel(config.attacks[row]);
    const r = await scopeAsync(async () => {
      const x = gpu.tensor(inputs.images.subarray(first * per, (first + count) * per), [
        count,
        ...imageShape,
      ]);
      const y = gpu.tensor(Uint32Array.from({ length: count }, (_, i) => inputs.labels[first + i]));
      return await evaluateBatch(
        {
          gpu,
          defense,
          specs: config.attacks,
          k: config.k,
          seed: config.seed,
          batch: b,
          checkUndefended: config.checkUndefended,
          onPart: (row, seconds) => {
            // the rate of this invocation: earlier pieces may have run on another machine
            const elapsed = (performance.now() - t0) / 1000, doneHere = b - resumed;
            const eta = doneHere > 0 ? elapsed / doneHere * (batches - b) : NaN;
            say(
              `eval: batch ${b + 1}/${batches} (${count} image${count === 1 ? "" : "s"}): ${partName(row)} ${
                seconds.toFixed(1)
              } s; ` +
                `elapsed ${shortDuration(elapsed)}, ETA ${
                  doneHere > 0 ? shortDuration(eta) : "after the first batch"
                }`,
            );
          },
        },
        x,
        y,
      );
    });
    const now = performance.now();
    progress.batches.push({ count, ...r, wallSeconds: (now - lastMark) / 1000 });
    lastMark = now;
    if (resume) {
      progress.gpuHighWaterBytes = Math.max(progress.gpuHighWaterBytes, gpu.pool.highWater);
      await saveEvalProgress(resume.path, progress);
    }
    await hooks.afterBatch?.(b, batches);
  }
  await gpu.sync();
  const results = resultsOf(progress.batches, config.attacks.length, budgets);
  // wall time over all pieces: the recorded batches' plus this piece's time after its last batch
  const wallSeconds = progress.batches.reduce((s, r) => s + r.wallSeconds, 0) +
    (performance.now() - lastMark) / 1000;
  const p = defense.purifier;
  return buildReport(config, results, {
    commit: hooks.commit ?? await gitCommit(),
    adapter: {
      description: gpu.adapter.description,
      isSoftware: gpu.adapter.isSoftware,
      backend: gpu.adapter.backend,
    },
    started: progress.started,
    wallSeconds,
    gpuHighWaterBytes: Math.max(progress.gpuHighWaterBytes, gpu.pool.highWater),
    defense: {
      name: defense.name,
      tStar: p ? p.options.tStar : null,
      nfe: p ? p.options.nfe : null,
      modelCallsPerPurification: p ? p.modelCalls : 0,
    },
  });
}
