/**
 * Spatial self-attention at UNet sizes (7x7 and 14x14 maps, one head): forward, and forward + backward.
 * At load, a custom loop prints ms per call (N calls, one sync read); then Deno.bench times the same.
 */
import { getGpu } from "../src/gpu/context.ts";
import { attention, attentionBackward } from "../src/ops/attention.ts";

const gpu = await getGpu();
const tick = gpu.zeros([1]);

interface Case {
  name: string;
  run: () => void;
}

function cases(b: number, l: number, d: number): Case[] {
  const q = gpu.zeros([b, l, d]), k = gpu.zeros([b, l, d]), v = gpu.zeros([b, l, d]);
  const dOut = gpu.zeros([b, l, d]);
  const scale = 1 / Math.sqrt(d);
  const name = `B=${b} L=${l} D=${d}`;
  return [
    {
      name: `forward ${name}`,
      run: () => {
        const r = attention(gpu, q, k, v, scale);
        r.out.dispose();
        r.probs.dispose();
      },
    },
    {
      name: `forward+backward ${name}`,
      run: () => {
        const r = attention(gpu, q, k, v, scale);
        const g = attentionBackward(gpu, dOut, q, k, v, r.probs, scale);
        for (const t of [r.out, r.probs, g.dq, g.dk, g.dv]) t?.dispose();
      },
    },
  ];
}

const CASES = [...cases(8, 49, 64), ...cases(8, 49, 128), ...cases(4, 196, 64)];

console.log(`attention on ${gpu.adapter.description} (software: ${gpu.adapter.isSoftware})`);
for (const c of CASES) {
  c.run();
  await gpu.read(tick);
  const iters = 20, t0 = performance.now();
  for (let i = 0; i < iters; i++) c.run();
  await gpu.read(tick);
  console.log(`${c.name}: ${((performance.now() - t0) / iters).toFixed(2)} ms`);
}

const ITERS = 5;
for (const c of CASES) {
  Deno.bench({
    name: `${c.name} x${ITERS}`,
    group: c.name.replace(/^\S+ /, ""),
    async fn() {
      for (let i = 0; i < ITERS; i++) c.run();
      await gpu.read(tick);
    },
  });
}
