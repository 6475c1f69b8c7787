/**
 * GFLOP/s of conv2d forward, input gradient and weight gradient per shape, and of a small UNet-like stack
 * forward + backward. Each measurement records `iters` ops, then syncs with one read of a tiny tensor;
 * nothing is read inside the timed loop. Pipelines are compiled by a warm-up call first.
 *
 *   deno run -A bench/conv2d_bench.ts [--iters 5] [--variant register|tiled] [--only name]
 * Under `deno bench` the same cases register as benchmarks.
 */
import { getGpu, type Gpu } from "../src/gpu/context.ts";
import {
  conv2d,
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  type ConvVariant,
  forceConv2dVariant,
} from "../src/ops/conv2d.ts";
import { scope, type Tensor } from "../src/tensor.ts";

interface Case {
  name: string;
  n: number;
  ci: number;
  h: number;
  co: number;
  k: number;
  s: 1 | 2;
  p: number;
}

const CASES: Case[] = [
  { name: "tfjs-ref 16x64x32x32->64 3x3", n: 16, ci: 64, h: 32, co: 64, k: 3, s: 1, p: 1 },
  { name: "unet 16x1x28x28->32 3x3", n: 16, ci: 1, h: 28, co: 32, k: 3, s: 1, p: 1 },
  { name: "unet 16x32x28x28->32 3x3", n: 16, ci: 32, h: 28, co: 32, k: 3, s: 1, p: 1 },
  { name: "unet 16x32x28x28->64 3x3 s2", n: 16, ci: 32, h: 28, co: 64, k: 3, s: 2, p: 1 },
  { name: "unet 16x64x14x14->64 3x3", n: 16, ci: 64, h: 14, co: 64, k: 3, s: 1, p: 1 },
  { name: "unet 16x64x14x14->128 3x3 s2", n: 16, ci: 64, h: 14, co: 128, k: 3, s: 2, p: 1 },
  { name: "unet 16x128x7x7->128 3x3", n: 16, ci: 128, h: 7, co: 128, k: 3, s: 1, p: 1 },
  { name: "unet 16x64x14x14->128 1x1", n: 16, ci: 64, h: 14, co: 128, k: 1, s: 1, p: 0 },
  { name: "unet 16x32x28x28->64 1x1", n: 16, ci: 32, h: 28, co: 64, k: 1, s: 1, p: 0 },
  { name: "unet 64x64x14x14->64 3x3", n: 64, ci: 64, h: 14, co: 64, k: 3, s: 1, p: 1 },
];

/** The convolutions of a small UNet-like denoiser at batch 16 (28 -> 14 -> 7 -> 14 -> 28). */
const STACK: Case[] = [
  { name: "in", n: 16, ci: 1, h: 28, co: 32, k: 3, s: 1, p: 1 },
  { name: "d28", n: 16, ci: 32, h: 28, co: 32, k: 3, s: 1, p: 1 },
  { name: "down1", n: 16, ci: 32, h: 28, co: 64, k: 3, s: 2, p: 1 },
  { name: "d14", n: 16, ci: 64, h: 14, co: 64, k: 3, s: 1, p: 1 },
  { name: "down2", n: 16, ci: 64, h: 14, co: 64, k: 3, s: 2, p: 1 },
  { name: "mid", n: 16, ci: 64, h: 7, co: 64, k: 3, s: 1, p: 1 },
  { name: "u14", n: 16, ci: 128, h: 14, co: 64, k: 3, s: 1, p: 1 },
  { name: "skip14", n: 16, ci: 128, h: 14, co: 64, k: 1, s: 1, p: 0 },
  { name: "u28", n: 16, ci: 96, h: 28, co: 32, k: 3, s: 1, p: 1 },
  { name: "out", n: 16, ci: 32, h: 28, co: 1, k: 3, s: 1, p: 1 },
];

const outSize = (c: Case) => Math.floor((c.h + 2 * c.p - c.k) / c.s) + 1;
const flops = (c: Case) => 2 * c.n * c.co * outSize(c) ** 2 * c.ci * c.k * c.k;

function tensors(gpu: Gpu, c: Case) {
  const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
  const o = outSize(c);
  return {
    x: gpu.tensor(rand(c.n * c.ci * c.h * c.h), [c.n, c.ci, c.h, c.h]),
    w: gpu.tensor(rand(c.co * c.ci * c.k * c.k), [c.co, c.ci, c.k, c.k]),
    b: gpu.tensor(rand(c.co), [c.co]),
    dy: gpu.tensor(rand(c.n * c.co * o * o), [c.n, c.co, o, o]),
  };
}

/** Process CPU seconds (all threads, llvmpipe's included), or NaN off Linux. */
function cpuSeconds(): number {
  try {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/**
 * Milliseconds per call of `op` (best of `reps` timed batches of `iters`, pipelines warmed first), and
 * the CPU time per call spread over the adapter's two threads: on a shared machine the wall clock counts
 * other processes' time, the CPU time does not.
 */
async function time(gpu: Gpu, op: () => Tensor | Tensor[], iters: number, reps = 2) {
  const tiny = gpu.zeros([1]);
  scope(() => op());
  await gpu.read(tiny);
  // small ops: enough iterations for ~150 ms per batch, so that the 10 ms CPU clock tick resolves them
  const t1 = performance.now();
  scope(() => op());
  await gpu.read(tiny);
  iters = Math.min(200, Math.max(iters, Math.ceil(150 / (performance.now() - t1))));
  let best = Infinity, cpuBest = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now(), c0 = cpuSeconds();
    for (let i = 0; i < iters; i++) scope(() => op());
    await gpu.read(tiny);
    best = Math.min(best, (performance.now() - t0) / iters);
    cpuBest = Math.min(cpuBest, (cpuSeconds() - c0) * 1000 / iters / 2);
  }
  tiny.dispose();
  return { ms: best, cpuMs: cpuBest };
}

const rate = (flop: number, ms: number) => ms > 0 && Number.isFinite(ms) ? (flop / ms / 1e6).toFixed(1) : "-";

type Kind = "forward" | "input-grad" | "weight-grad";

function opFor(gpu: Gpu, c: Case, kind: Kind, t: ReturnType<typeof tensors>): () => Tensor {
  const opts = { stride: c.s, padding: c.p };
  if (kind === "forward") return () => conv2d(gpu, t.x, t.w, t.b, opts);
  if (kind === "input-grad") return () => conv2dBackwardInput(gpu, t.dy, t.w, t.x.shape, opts);
  return () => conv2dBackwardWeight(gpu, t.x, t.dy, t.w.shape, opts);
}

/** Forward of every layer, then input, weight and bias gradients of every layer, as in training. */
function stackStep(gpu: Gpu, ts: ReturnType<typeof tensors>[]): Tensor[] {
  const out: Tensor[] = [];
  STACK.forEach((c, i) => out.push(conv2d(gpu, ts[i].x, ts[i].w, ts[i].b, { stride: c.s, padding: c.p })));
  for (let i = STACK.length - 1; i >= 0; i--) {
    const c = STACK[i], t = ts[i], opts = { stride: c.s, padding: c.p };
    if (i > 0) out.push(conv2dBackwardInput(gpu, t.dy, t.w, t.x.shape, opts));
    out.push(conv2dBackwardWeight(gpu, t.x, t.dy, t.w.shape, opts), conv2dBackwardBias(gpu, t.dy));
  }
  return out;
}

const stackFlops = STACK.reduce((s, c, i) => s + flops(c) * (i > 0 ? 3 : 2), 0);

async function main() {
  const args = Deno.args;
  const arg = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const iters = Number(arg("iters") ?? 5);
  const only = arg("only");
  const variant = arg("variant") as ConvVariant | undefined;
  const gpu = await getGpu();
  if (variant) forceConv2dVariant(variant);
  console.log(`adapter: ${gpu.adapter.description} (software: ${gpu.adapter.isSoftware})`);
  console.log(`variant: ${variant ?? (gpu.adapter.isSoftware ? "register" : "tiled")}, ${iters} iterations`);
  console.log("GFLOP/s by wall clock (by CPU time / 2 threads)");
  console.log("     forward    input-grad   weight-grad   shape");
  for (const c of CASES) {
    if (only && !c.name.includes(only)) continue;
    const t = tensors(gpu, c);
    const rates: string[] = [];
    for (const kind of ["forward", "input-grad", "weight-grad"] as Kind[]) {
      const { ms, cpuMs } = await time(gpu, opFor(gpu, c, kind, t), iters);
      rates.push(`${rate(flops(c), ms)} (${rate(flops(c), cpuMs)})`.padStart(12));
    }
    console.log(`${rates.join("  ")}   ${c.name}`);
    for (const x of Object.values(t)) x.dispose();
  }
  if (!only || "stack".includes(only)) {
    const ts = STACK.map((c) => tensors(gpu, c));
    const { ms, cpuMs } = await time(gpu, () => stackStep(gpu, ts), Math.max(1, Math.floor(iters / 2)));
    console.log(
      `unet-like stack forward+backward (${STACK.length} convs, ${(stackFlops / 1e9).toFixed(2)} GFLOP): ` +
        `${ms.toFixed(1)} ms, ${rate(stackFlops, ms)} GFLOP/s (${rate(stackFlops, cpuMs)} by CPU time)`,
    );
    for (const t of ts) for (const x of Object.values(t)) x.dispose();
  }
}

if (import.meta.main) await main();

// `deno bench`: the reference shape's three kernels, each call timing ITERS ops and one sync
const ITERS = 5;
for (const kind of ["forward", "input-grad", "weight-grad"] as Kind[]) {
  let ready: { gpu: Gpu; op: () => Tensor } | null = null;
  Deno.bench({
    name: `conv2d ${kind} ${CASES[0].name} (x${ITERS})`,
    n: 3,
    warmup: 1,
    async fn(b) {
      if (!ready) {
        const gpu = await getGpu();
        ready = { gpu, op: opFor(gpu, CASES[0], kind, tensors(gpu, CASES[0])) };
        scope(ready.op);
      }
      const { gpu, op } = ready;
      const tiny = gpu.zeros([1]);
      await gpu.read(tiny);
      b.start();
      const t0 = performance.now();
      for (let i = 0; i < ITERS; i++) scope(op);
      await gpu.read(tiny);
      const ms = (performance.now() - t0) / ITERS;
      b.end();
      tiny.dispose();
      console.log(`conv2d ${kind}: ${(flops(CASES[0]) / ms / 1e6).toFixed(2)} GFLOP/s`);
    },
  });
}
