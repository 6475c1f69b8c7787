/**
 * Random-number and per-row sort throughput (sort is here too: the Gaussian rank mapping uses both).
 * Each iteration records REPS calls and waits once (a wait costs >= 11 ms on Deno, so it is amortised);
 * best of a few runs. Run: deno bench -A bench/random_bench.ts
 */
import { getGpu } from "../src/gpu/context.ts";
import { advanceCounter, normal, rngKey, uniform } from "../src/ops/random.ts";
import { gatherRows, rank, sort, sortRows, sortSchedule } from "../src/ops/sort.ts";
import { scope, type Tensor } from "../src/tensor.ts";

const gpu = await getGpu();
const REPS = 8;
const key = rngKey(gpu, 1234, 0, 0);

/** Seconds per call of `op`, after a warm-up call that compiles its pipelines. */
async function time(op: () => unknown): Promise<number> {
  scope(op);
  await gpu.sync();
  let best = Infinity;
  for (let run = 0; run < 3; run++) {
    await gpu.sync();
    const t0 = performance.now();
    for (let k = 0; k < REPS; k++) scope(op);
    await gpu.sync();
    best = Math.min(best, (performance.now() - t0) / 1000 / REPS);
  }
  return best;
}

const rows = (r: number, l: number): Tensor =>
  gpu.tensor(Float32Array.from({ length: r * l }, () => Math.random() - 0.5), [r, l]);
const x1k = rows(192, 1024), x4k = rows(64, 4096);

const cases: [string, () => unknown, number, string][] = [
  ["uniform 4M", () => uniform(gpu, [1 << 22], key), 1 << 22, "values"],
  ["normal 4M", () => normal(gpu, [1 << 22], key), 1 << 22, "values"],
  [
    "normal [64,3,32,32] + advanceCounter",
    () => (normal(gpu, [64, 3, 32, 32], key), advanceCounter(gpu, key)),
    196608,
    "values",
  ],
  ["sort values 192 x 1024", () => sort(gpu, x1k), 192 * 1024, "elements"],
  [
    "sort values+argsort+rank 192 x 1024",
    () => sortRows(gpu, x1k, { values: true, indices: true, rank: true }),
    192 * 1024,
    "elements",
  ],
  ["rank 64 x 4096", () => rank(gpu, x4k), 64 * 4096, "elements"],
  [
    "Gaussian rank map 192 x 1024",
    () => gatherRows(gpu, sort(gpu, x1k), rank(gpu, x1k)),
    192 * 1024,
    "elements",
  ],
];

console.log(
  `adapter: ${gpu.adapter.description}; sort passes: 1024 -> ${sortSchedule(1024).length}, 4096 -> ${
    sortSchedule(4096).length
  }`,
);
for (const [name, op, count, unit] of cases) {
  const s = await time(op);
  console.log(
    `${name.padEnd(40)} ${(s * 1e3).toFixed(2).padStart(8)} ms  ${(count / s / 1e6).toFixed(1)} M${unit}/s`,
  );
}
