/**
 * Side-by-side benchmark against TF.js's WebGPU backend, in one process on the same adapter: matmul, conv2d
 * forward / input gradient / weight gradient at UNet shapes, and a small UNet-like stack forward+backward.
 * Prints a Markdown table (ms/iter, GFLOP/s at 2 FLOPs per multiply-add, ours/TF.js time ratio) and checks
 * that both sides computed the same numbers.
 *
 *   deno task bench:tfjs [--only <substring>] [--seconds <per measurement, default 1.5>]
 *                        [--tf-flag NAME=VALUE]...
 *
 * Method per case and side: warm up (compiles pipelines), time one iteration to size the run, then
 * N iterations recorded back to back with one sync at the end; the best of two such runs is reported
 * (other processes share the CPU on a software adapter). TF.js runs with its default flags except
 * WEBGPU_CPU_FORWARD=false, and uses fused conv+bias(+ReLU), its fastest path.
 */
// TF.js is only a benchmark baseline, so it is pinned here rather than in the import map
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-webgpu";
import { getGpu } from "../src/gpu/context.ts";
import {
  type Case,
  convForwardCase,
  convInputGradCase,
  type ConvShape,
  convWeightGradCase,
  matmulCase,
  type Side,
  stackCase,
} from "./tfjs_cases.ts";
import { relDiff } from "./tfjs_layout.ts";

const conv = (n: number, ci: number, h: number, co: number, s: 1 | 2 = 1): ConvShape => ({
  n,
  ci,
  h,
  w: h,
  co,
  k: 3,
  s,
});

/** The UNet shapes: MNIST-sized images at batch 16, two downsamplings. */
const UNET: ConvShape[] = [
  conv(16, 32, 28, 32),
  conv(16, 32, 28, 64, 2),
  conv(16, 64, 14, 64),
  conv(16, 64, 14, 64, 2),
  conv(16, 64, 7, 64),
];
const CONV_SHAPES: ConvShape[] = [conv(16, 64, 32, 64), ...UNET];

const CASES: Case[] = [
  matmulCase(512, 512, 512),
  matmulCase(256, 256, 256),
  ...CONV_SHAPES.map(convForwardCase),
  ...CONV_SHAPES.map(convInputGradCase),
  ...CONV_SHAPES.map(convWeightGradCase),
  stackCase([conv(16, 1, 28, 32), ...UNET]),
];

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

/** TF.js flags given as `--tf-flag NAME=VALUE` (repeatable), e.g. WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE=false. */
function tfFlags(): [string, number | boolean][] {
  return Deno.args.flatMap((a, i) => {
    if (a !== "--tf-flag") return [];
    const [name, value] = (Deno.args[i + 1] ?? "").split("=");
    const v = value === "true" ? true : value === "false" ? false : Number(value);
    return [[name, v] as [string, number | boolean]];
  });
}

interface Timing {
  ms: number;
  iters: number;
}

/**
 * ms per iteration: a warm-up iteration (compiles pipelines), a sizing iteration, then the best of two
 * runs of N back-to-back iterations with one sync. An iteration slower than the budget is reported from
 * the sizing run alone (TF.js's naive filter gradient takes seconds).
 */
async function time(side: Side, seconds: number): Promise<Timing> {
  side.step();
  await side.sync();
  let t0 = performance.now();
  side.step();
  await side.sync();
  const one = performance.now() - t0;
  if (one >= seconds * 1000) return { ms: one, iters: 1 };
  const iters = Math.max(2, Math.min(200, Math.ceil((seconds * 1000) / Math.max(one, 0.01))));
  let best = Infinity;
  for (let run = 0; run < 2; run++) {
    t0 = performance.now();
    for (let i = 0; i < iters; i++) side.step();
    await side.sync();
    best = Math.min(best, (performance.now() - t0) / iters);
  }
  return { ms: best, iters };
}

async function main() {
  const only = arg("--only");
  const seconds = Number(arg("--seconds") ?? 1.5);
  const gpu = await getGpu();
  // keep every TF.js op on the GPU (it otherwise runs ops on small CPU-resident inputs on the CPU)
  tf.env().set("WEBGPU_CPU_FORWARD", false);
  const flags = tfFlags();
  for (const [name, value] of flags) tf.env().set(name, value);
  if (!(await tf.setBackend("webgpu"))) throw new Error("TF.js could not start its WebGPU backend");
  await tf.ready();

  const rows: string[] = [];
  for (const c of CASES.filter((c) => !only || c.name.includes(only))) {
    const tfSide = c.tfjs(tf), ours = c.ours(gpu);
    const tt = await time(tfSide, seconds);
    const to = await time(ours, seconds);
    const diff = relDiff(await ours.result(), await tfSide.result());
    tfSide.dispose();
    ours.dispose();
    const gflops = (ms: number) => ((2 * c.macs) / (ms * 1e6)).toFixed(2);
    const row = [
      c.name,
      (2 * c.macs / 1e9).toFixed(3),
      tt.ms.toFixed(2),
      gflops(tt.ms),
      to.ms.toFixed(2),
      gflops(to.ms),
      (to.ms / tt.ms).toFixed(2),
      diff.toExponential(1),
    ];
    rows.push(`| ${row.join(" | ")} |`);
    console.error(
      `${c.name}: TF.js ${tt.ms.toFixed(2)} ms (${tt.iters} it), ours ${
        to.ms.toFixed(2)
      } ms (${to.iters} it)`,
    );
    if (!(diff < 1e-3)) console.error(`  WARNING: results differ (relative ${diff.toExponential(2)})`);
  }

  const load = Deno.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(
    `Adapter: ${gpu.adapter.description} (${gpu.adapter.isSoftware ? "software" : "hardware"}, ` +
      `backend ${gpu.adapter.backend}); Deno ${Deno.version.deno}; TF.js ${tf.version_core} webgpu; ` +
      `load average ${load}${
        flags.length ? `; TF.js flags ${flags.map((f) => f.join("=")).join(" ")}` : ""
      }\n`,
  );
  console.log(
    "| case | GFLOP | TF.js ms | TF.js GFLOP/s | ours ms | ours GFLOP/s | ours/TF.js time | rel. diff |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) console.log(r);
}

await main();
