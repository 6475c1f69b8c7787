/**
 * GroupNorm forward/backward throughput on UNet shapes, in effective GB/s (bytes that must move: x read
 * and y written forward; dy, x read and dx written backward). `deno bench -A bench/groupnorm_bench.ts`
 * times one call per shape; `deno run -A bench/groupnorm_bench.ts` prints the GB/s table (both variants).
 */
import { getGpu, type Gpu } from "../src/gpu/context.ts";
import {
  groupNorm,
  groupNormBackward,
  type GroupNormVariant,
  groupNormVariant,
} from "../src/ops/groupnorm.ts";
import { map } from "../src/ops/map.ts";
import { scope, type Tensor } from "../src/tensor.ts";

const SHAPES: [number[], number][] = [
  [[16, 32, 28, 28], 8],
  [[16, 64, 14, 14], 32],
  [[16, 128, 7, 7], 32],
  [[64, 32, 28, 28], 8],
  [[64, 64, 14, 14], 32],
  [[64, 128, 7, 7], 8],
];

const gpu = await getGpu();

function inputs(gpu: Gpu, shape: number[]) {
  const n = shape.reduce((a, b) => a * b), c = shape[1];
  const x = new Float32Array(n).map((_, i) => Math.sin(i * 0.37));
  return {
    x: gpu.tensor(x, shape),
    dy: gpu.tensor(x.map((v) => v * 0.5 + 0.1), shape),
    gamma: gpu.tensor(new Float32Array(c).fill(1.1)),
    beta: gpu.tensor(new Float32Array(c).fill(0.1)),
  };
}

/** Seconds per call: the best of 5 trials of `reps` calls between two syncs (the ~11 ms sync wait
 * amortised; the best trial filters out other processes on a shared machine). */
async function time(run: () => void, reps: number): Promise<number> {
  run();
  await gpu.sync();
  let best = Infinity;
  for (let trial = 0; trial < 5; trial++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) scope(run);
    await gpu.sync();
    best = Math.min(best, (performance.now() - t0) / 1000 / reps);
  }
  return best;
}

async function measure(shape: number[], groups: number, reps: number) {
  const t = inputs(gpu, shape);
  const fwd = groupNorm(gpu, t.x, t.gamma, t.beta, groups);
  const bytes = t.x.bytes;
  const f = await time(() => void groupNorm(gpu, t.x, t.gamma, t.beta, groups), reps);
  const b = await time(
    () => void groupNormBackward(gpu, t.dy, t.x, fwd.mean, fwd.rstd, t.gamma, groups),
    reps,
  );
  // calibration: an elementwise pass moving the forward's bytes (the machine is shared and noisy)
  const e = await time(() => void map(gpu, "bench_affine", "x0 * 1.5 + 0.25", [t.x]), reps);
  for (const v of [...Object.values(t), fwd.y, fwd.mean, fwd.rstd] as Tensor[]) v.dispose();
  return {
    fwdMs: f * 1e3,
    fwdGBs: (2 * bytes) / f / 1e9,
    bwdMs: b * 1e3,
    bwdGBs: (3 * bytes) / b / 1e9,
    mapGBs: (2 * bytes) / e / 1e9,
  };
}

for (const [shape, groups] of SHAPES) {
  const t = inputs(gpu, shape);
  const fwd = groupNorm(gpu, t.x, t.gamma, t.beta, groups);
  // 10 forward and 10 backward calls per iteration: one sync wait amortised over 20 ops
  Deno.bench(`groupNorm 10x(fwd+bwd) [${shape}] G=${groups}`, { n: 10, warmup: 2 }, async () => {
    for (let i = 0; i < 10; i++) {
      scope(() => {
        groupNorm(gpu, t.x, t.gamma, t.beta, groups);
        groupNormBackward(gpu, t.dy, t.x, fwd.mean, fwd.rstd, t.gamma, groups);
      });
    }
    await gpu.sync();
  });
}

if (import.meta.main) {
  console.log(`adapter: ${gpu.adapter.description}`);
  const variants: GroupNormVariant[] = gpu.adapter.isSoftware ? ["software", "gpu"] : ["gpu", "software"];
  for (const variant of variants) {
    groupNormVariant.force = variant;
    for (const [shape, groups] of SHAPES) {
      const r = await measure(shape, groups, 10);
      console.log(
        `${variant.padEnd(8)} [${shape}] G=${groups}: fwd ${r.fwdMs.toFixed(2)} ms ${
          r.fwdGBs.toFixed(2)
        } GB/s, ` +
          `bwd ${r.bwdMs.toFixed(2)} ms ${r.bwdGBs.toFixed(2)} GB/s (elementwise map: ${
            r.mapGBs.toFixed(2)
          } GB/s)`,
      );
    }
  }
}
