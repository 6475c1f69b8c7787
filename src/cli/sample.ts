/**
 * `addt sample`: a DDPM run folder -> n unconditional samples (DDPM ancestral or DDIM on `steps` strides,
 * seeded) -> a PNG grid written atomically. Prints the path, the settings and the seconds. The same flags
 * give the same PNG bytes.
 */
import type { Command } from "@commander-js/extra-typings";
import * as E from "fp-ts/Either.js";
import * as TE from "fp-ts/TaskEither.js";
import { exitCodeOf, UsageError } from "./errors.ts";
import { getGpu } from "../gpu/context.ts";
import { loadDdpmRun } from "../train/run_folder.ts";
import { SAMPLE_BATCH, sampleImages } from "../diffusion/sample_grid.ts";
import type { SamplerKind, VarianceKind } from "../diffusion/sampler.ts";
import { writeGridPng } from "../io/png.ts";
import { integer, number, oneOf, type Parse, text } from "./flags.ts";

export interface SampleConfig {
  ddpm: string;
  ema: boolean;
  n: number;
  steps: number;
  sampler: SamplerKind;
  /** DDIM only. */
  eta: number;
  /** DDPM only. */
  variance: VarianceKind;
  seed: number;
  /** Images per grid row (default: ceil(sqrt(n))). */
  cols: number | null;
  scale: number;
  batchSize: number;
  out: string;
}

export const sampleDefaults = (): SampleConfig => ({
  ddpm: "",
  ema: true,
  n: 64,
  steps: 100,
  sampler: "ddpm",
  eta: 0,
  variance: "fixed_small",
  seed: 0,
  cols: null,
  scale: 1,
  batchSize: SAMPLE_BATCH,
  out: "",
});

const d = sampleDefaults();

const FLAGS: { flag: string; help: string; parse: Parse | null }[] = [
  {
    flag: "--ddpm <dir>",
    help: "the DDPM's training run folder (required; EMA weights when present)",
    parse: text,
  },
  { flag: "--no-ema", help: "use the DDPM's raw weights instead of its EMA", parse: null },
  { flag: "--n <n>", help: `samples (default: ${d.n})`, parse: integer },
  { flag: "--steps <n>", help: `reverse steps from T (default: ${d.steps})`, parse: integer },
  { flag: "--sampler <name>", help: "ddpm | ddim (default: ddpm)", parse: oneOf(["ddpm", "ddim"]) },
  { flag: "--eta <x>", help: "DDIM eta (default: 0, deterministic)", parse: number },
  {
    flag: "--variance <kind>",
    help: "DDPM variance: fixed_small | fixed_large (default: fixed_small)",
    parse: oneOf(["fixed_small", "fixed_large"]),
  },
  { flag: "--seed <n>", help: "seed of every draw (default: 0)", parse: integer },
  { flag: "--cols <n>", help: "images per grid row (default: ceil(sqrt(n)))", parse: integer },
  { flag: "--scale <n>", help: "pixels per image pixel (default: 1)", parse: integer },
  {
    flag: "--batch-size <n>",
    help: `images generated at once; part of the randomness (default: ${d.batchSize})`,
    parse: integer,
  },
  { flag: "--out <file.png>", help: "the PNG grid to write (required)", parse: text },
];

const keyOf = (flag: string) =>
  flag.split(" ")[0].replace(/^--(no-)?/, "").replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());

/** The config from parsed commander options, checked; UsageError with one line otherwise. */
export function sampleConfigFromFlags(given: Record<string, unknown>): SampleConfig {
  const c = sampleDefaults() as unknown as Record<string, unknown>;
  for (const f of FLAGS) {
    const key = keyOf(f.flag), raw = given[key];
    if (raw === undefined) continue;
    if (f.parse === null) {
      if (raw === false) c[key] = false;
      continue;
    }
    const v = f.parse(String(raw), f.flag.split(" ")[0]);
    if (E.isLeft(v)) throw new UsageError(v.left);
    c[key] = v.right;
  }
  const config = c as unknown as SampleConfig;
  const bad = (m: string) => {
    throw new UsageError(m);
  };
  if (!config.ddpm) bad("--ddpm is required (a DDPM training run folder)");
  if (!config.out) bad("--out is required (the PNG file to write)");
  if (config.n < 1) bad("--n must be at least 1");
  if (config.steps < 1) bad("--steps must be at least 1");
  if (config.cols !== null && config.cols < 1) bad("--cols must be at least 1");
  if (config.scale < 1 || config.scale > 16) bad("--scale must be in [1, 16]");
  if (config.batchSize < 1) bad("--batch-size must be at least 1");
  if (given.eta !== undefined && config.sampler !== "ddim") bad("--eta applies to --sampler ddim only");
  if (!(config.eta >= 0 && config.eta <= 1)) bad(`--eta must be in [0, 1], got ${config.eta}`);
  if (given.variance !== undefined && config.sampler !== "ddpm") {
    bad("--variance applies to --sampler ddpm only");
  }
  return config;
}

const describe = (c: SampleConfig) =>
  `${c.n} samples, ${c.sampler.toUpperCase()} ${c.steps} steps ` +
  `(${c.sampler === "ddpm" ? c.variance : `eta ${c.eta}`}), seed ${c.seed}, ` +
  `${c.ema ? "EMA weights (when present)" : "raw weights"} of ${c.ddpm}`;

/** The whole command; resolves to the line to print. */
export async function runSample(c: SampleConfig): Promise<string> {
  const gpu = await getGpu();
  const t0 = performance.now();
  const ddpm = await loadDdpmRun(gpu, c.ddpm, c.ema);
  try {
    const T = ddpm.schedule.T;
    if (c.steps > T) throw new UsageError(`--steps ${c.steps} exceeds the DDPM's T = ${T}`);
    const u = ddpm.config, shape = [u.in_channels, u.sample_size, u.sample_size] as const;
    const images = await sampleImages(gpu, ddpm.eps, shape, {
      n: c.n,
      steps: c.steps,
      seed: c.seed,
      batchSize: c.batchSize,
      sampler: c.sampler,
      ...(c.sampler === "ddim" ? { eta: c.eta } : { variance: c.variance }),
      schedule: ddpm.schedule,
      onBatch: (done) =>
        console.error(`sample: ${done}/${c.n} (${((performance.now() - t0) / 1000).toFixed(1)} s)`),
    });
    const dir = c.out.includes("/") ? c.out.slice(0, c.out.lastIndexOf("/")) : "";
    if (dir) await Deno.mkdir(dir, { recursive: true });
    await writeGridPng(c.out, images, [c.n, ...shape], {
      ...(c.cols ? { cols: c.cols } : {}),
      scale: c.scale,
    });
    return `wrote ${c.out}: ${describe(c)}; ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s (${ddpm.weights.path})`;
  } finally {
    ddpm.store.dispose();
  }
}

export function registerSampleCommand(program: Command, setExit: (code: number) => void): void {
  const cmd = program.command("sample").description(
    "a PNG grid of unconditional samples from a trained DDPM",
  );
  for (const f of FLAGS) cmd.option(f.flag, f.help);
  cmd.action(async (opts) => {
    const flow = TE.tryCatch(
      async () => await runSample(sampleConfigFromFlags(opts as Record<string, unknown>)),
      (e) => e,
    );
    setExit(await exitCodeOf(flow, (line) => console.log(line)));
  });
}
