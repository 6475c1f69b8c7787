/**
 * GEMM throughput. At load, a custom loop runs each shape N times, syncs once with a 1-element read, and
 * prints GFLOP/s with the adapter; then Deno.bench times the same loops grouped by shape.
 * On a shared machine the wall-clock rate understates the kernel: the CPU-time rate (GFLOP per second of
 * this process's CPU time, times the core count) says what an idle machine would give a software adapter.
 */
import { getGpu } from "../src/gpu/context.ts";
import { linear, matmul } from "../src/ops/matmul.ts";

const gpu = await getGpu();
const tick = gpu.zeros([1]);

interface Case {
  name: string;
  flops: number;
  run: () => void;
}

function gemmCase(b: number | null, m: number, n: number, k: number, transA = false, transB = false): Case {
  const a = gpu.zeros(b === null ? (transA ? [k, m] : [m, k]) : (transA ? [b, k, m] : [b, m, k]));
  const bb = gpu.zeros(b === null ? (transB ? [n, k] : [k, n]) : (transB ? [b, n, k] : [b, k, n]));
  const t = `${transA ? "T" : "N"}${transB ? "T" : "N"}`;
  return {
    name: `${b === null ? "" : `${b}x`}${m}x${n}x${k} ${t}`,
    flops: 2 * (b ?? 1) * m * n * k,
    run: () => matmul(gpu, a, bb, { transA, transB }).dispose(),
  };
}

function linearCase(n: number, inF: number, outF: number): Case {
  const x = gpu.zeros([n, inF]), w = gpu.zeros([outF, inF]), bias = gpu.zeros([outF]);
  return {
    name: `linear ${n}x${inF}->${outF}`,
    flops: 2 * n * inF * outF,
    run: () => linear(gpu, x, w, bias).dispose(),
  };
}

const CASES: Case[] = [
  gemmCase(null, 512, 512, 512),
  gemmCase(null, 512, 512, 512, true, false),
  gemmCase(null, 512, 512, 512, false, true),
  gemmCase(null, 511, 509, 513),
  gemmCase(null, 256, 256, 256),
  gemmCase(8, 49, 49, 64, false, true), // attention scores over a 7x7 map
  linearCase(64, 512, 512),
];

function cpuSeconds(): number {
  try {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

async function rate(c: Case, iters: number): Promise<string> {
  c.run();
  await gpu.read(tick);
  const t0 = performance.now(), c0 = cpuSeconds();
  for (let i = 0; i < iters; i++) c.run();
  await gpu.read(tick);
  const ms = (performance.now() - t0) / iters, cpuMs = (cpuSeconds() - c0) * 1000 / iters;
  const cores = navigator.hardwareConcurrency;
  const cpuRate = Number.isFinite(cpuMs)
    ? `, ${(c.flops / (cpuMs / cores) / 1e6).toFixed(2)} per CPU time`
    : "";
  return `${c.name}: ${ms.toFixed(2)} ms, ${(c.flops / ms / 1e6).toFixed(2)} GFLOP/s${cpuRate}`;
}

console.log(`matmul on ${gpu.adapter.description} (software: ${gpu.adapter.isSoftware})`);
for (const c of CASES) console.log(await rate(c, c.flops > 1e8 ? 10 : 50));

const ITERS = 5;
for (const c of CASES) {
  Deno.bench({
    name: `${c.name} x${ITERS}`,
    group: c.name,
    async fn() {
      for (let i = 0; i < ITERS; i++) c.run();
      await gpu.read(tick);
    },
  });
}
