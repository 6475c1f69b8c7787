/**
 * Elementwise and reduction throughput. Each iteration records REPS dispatches and waits once (a wait
 * costs >= 11 ms on Deno, so it is amortised); the GB/s printed at the start counts bytes read + written.
 * Run: deno bench -A bench/elementwise_bench.ts
 */
import { getGpu } from "../src/gpu/context.ts";
import { add, mul } from "../src/ops/elementwise.ts";
import { reduce } from "../src/ops/reduce.ts";
import type { Tensor } from "../src/tensor.ts";

const gpu = await getGpu();
const N = 1 << 22; // 16 MiB per operand
const REPS = 16;
const a = gpu.tensor(new Float32Array(N).fill(1), [N]);
const b = gpu.tensor(new Float32Array(N).fill(2), [N]);
const odd = gpu.tensor(new Float32Array(N - 1).fill(1), [N - 1]); // not a multiple of 4: the scalar path
const channel = gpu.tensor(new Float32Array(64).fill(3), [64]);
const nchw = a.reshape([16, 64, 64, 64]);

/** Seconds per call of `op` (best of a few runs of REPS calls). */
async function time(op: () => Tensor): Promise<number> {
  let best = Infinity;
  for (let run = 0; run < 4; run++) {
    await gpu.sync();
    const t0 = performance.now();
    for (let k = 0; k < REPS; k++) op().dispose();
    await gpu.sync();
    best = Math.min(best, (performance.now() - t0) / 1000 / REPS);
  }
  return best;
}

const cases: [string, () => Tensor, number][] = [
  ["add vec4 (4M + 4M -> 4M)", () => add(gpu, a, b), 12 * N],
  ["add scalar path (4M - 1)", () => add(gpu, odd, odd), 12 * (N - 1)],
  ["mul per-channel [64] x NCHW", () => mul(gpu, nchw, channel), 8 * N],
  ["sum all, contiguous chunks", () => reduce(gpu, "sum", a, [0], { kind: "sum" }, [1], false), 4 * N],
  ["sum all, strided chunks", () => reduce(gpu, "sum", a, [0], { kind: "sum" }, [1], true), 4 * N],
  [
    "sum per-channel (0,2,3), contiguous",
    () => reduce(gpu, "pc", nchw, [0, 2, 3], { kind: "sum" }, [64], false),
    4 * N,
  ],
  [
    "sum per-channel (0,2,3), strided",
    () => reduce(gpu, "pc", nchw, [0, 2, 3], { kind: "sum" }, [64], true),
    4 * N,
  ],
  [
    "sum per-sample [16, 256k], contiguous",
    () => reduce(gpu, "ps", nchw, [1, 2, 3], { kind: "sum" }, [16], false),
    4 * N,
  ],
];

console.log(`adapter: ${gpu.adapter.description}`);
for (const [name, op, bytes] of cases) {
  const s = await time(op);
  console.log(
    `${name.padEnd(40)} ${(s * 1e3).toFixed(2).padStart(8)} ms  ${(bytes / s / 1e9).toFixed(2)} GB/s`,
  );
}

for (const [name, op] of cases) {
  Deno.bench(`${name} x${REPS}`, async () => {
    for (let k = 0; k < REPS; k++) op().dispose();
    await gpu.sync();
  });
}
