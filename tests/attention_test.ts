import { assertClose, f32, finiteDiff, freshSeed, randArray, testGpu } from "./util.ts";
import { attention, attentionBackward } from "../src/ops/attention.ts";
import * as ad from "../src/autodiff/attention.ts";
import { backward, constant, leaf } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";
import type { MatmulVariant } from "../src/ops/matmul.ts";

const gpu = await testGpu();
const native: MatmulVariant = gpu.adapter.isSoftware ? "register" : "shared";

interface Dims {
  b: number;
  lq: number;
  lk: number;
  d: number;
  dv: number;
}

/** softmax(scale q k^T) v and the probabilities, in float64. */
function refAttention(q: Float64Array, k: Float64Array, v: Float64Array, s: Dims, scale: number) {
  const out = new Float64Array(s.b * s.lq * s.dv), probs = new Float64Array(s.b * s.lq * s.lk);
  for (let b = 0; b < s.b; b++) {
    for (let i = 0; i < s.lq; i++) {
      const row = new Float64Array(s.lk);
      for (let j = 0; j < s.lk; j++) {
        let dot = 0;
        for (let c = 0; c < s.d; c++) dot += q[(b * s.lq + i) * s.d + c] * k[(b * s.lk + j) * s.d + c];
        row[j] = scale * dot;
      }
      const m = Math.max(...row);
      let sum = 0;
      for (let j = 0; j < s.lk; j++) sum += row[j] = Math.exp(row[j] - m);
      for (let j = 0; j < s.lk; j++) {
        const p = row[j] / sum;
        probs[(b * s.lq + i) * s.lk + j] = p;
        for (let c = 0; c < s.dv; c++) out[(b * s.lq + i) * s.dv + c] += p * v[(b * s.lk + j) * s.dv + c];
      }
    }
  }
  return { out, probs };
}

function inputs(s: Dims, seed: number) {
  const q = randArray(s.b * s.lq * s.d, seed), k = randArray(s.b * s.lk * s.d, seed + 1);
  const v = randArray(s.b * s.lk * s.dv, seed + 2), dOut = randArray(s.b * s.lq * s.dv, seed + 3);
  const t = {
    q: gpu.tensor(f32(q), [s.b, s.lq, s.d]),
    k: gpu.tensor(f32(k), [s.b, s.lk, s.d]),
    v: gpu.tensor(f32(v), [s.b, s.lk, s.dv]),
    dOut: gpu.tensor(f32(dOut), [s.b, s.lq, s.dv]),
  };
  return { q, k, v, dOut, t };
}

function refGrads(x: ReturnType<typeof inputs>, s: Dims, scale: number) {
  const f = (q: Float64Array, k: Float64Array, v: Float64Array) => refAttention(q, k, v, s, scale).out;
  return {
    dq: finiteDiff((q) => f(q, x.k, x.v), x.q, x.dOut),
    dk: finiteDiff((k) => f(x.q, k, x.v), x.k, x.dOut),
    dv: finiteDiff((v) => f(x.q, x.k, v), x.v, x.dOut),
  };
}

Deno.test("attention: forward and probs vs float64 (small, cross-length, UNet 7x7 and 14x14 sizes)", async () => {
  const cases: Dims[] = [
    { b: 1, lq: 1, lk: 1, d: 1, dv: 1 },
    { b: 2, lq: 9, lk: 9, d: 5, dv: 5 },
    { b: 3, lq: 4, lk: 7, d: 6, dv: 3 },
    { b: 2, lq: 49, lk: 49, d: 32, dv: 32 },
    { b: 1, lq: 196, lk: 196, d: 20, dv: 20 },
  ];
  for (const s of cases) {
    const seed = freshSeed();
    const scale = 1 / Math.sqrt(s.d);
    const x = inputs(s, seed);
    const { out, probs } = attention(gpu, x.t.q, x.t.k, x.t.v, scale);
    const ref = refAttention(x.q, x.k, x.v, s, scale);
    const what = `attention ${JSON.stringify(s)} seed=${seed}`;
    if (out.shape.join() !== [s.b, s.lq, s.dv].join()) throw new Error(`${what}: out [${out.shape}]`);
    assertClose(await gpu.read(out), ref.out, 1e-5, `${what} out`);
    assertClose(await gpu.read(probs), ref.probs, 1e-5, `${what} probs`);
  }
});

// the adapter's own GEMM variant only: tests/matmul_test.ts covers the other one
Deno.test("attention backward: raw kernels vs finite differences", async () => {
  for (const variant of [native]) {
    for (const s of [{ b: 2, lq: 9, lk: 9, d: 5, dv: 5 }, { b: 1, lq: 3, lk: 6, d: 4, dv: 2 }]) {
      const seed = freshSeed();
      const scale = 0.7;
      const x = inputs(s, seed);
      const { probs } = attention(gpu, x.t.q, x.t.k, x.t.v, scale, { variant });
      const g = attentionBackward(gpu, x.t.dOut, x.t.q, x.t.k, x.t.v, probs, scale, {}, { variant });
      const ref = refGrads(x, s, scale);
      const what = `${variant} ${JSON.stringify(s)} seed=${seed}`;
      assertClose(await gpu.read(g.dq!), ref.dq, 1e-5, `dq ${what}`);
      assertClose(await gpu.read(g.dk!), ref.dk, 1e-5, `dk ${what}`);
      assertClose(await gpu.read(g.dv!), ref.dv, 1e-5, `dv ${what}`);
    }
  }
});

Deno.test("attention autodiff: backward() end to end, a constant input gets no gradient", async () => {
  const s = { b: 2, lq: 9, lk: 9, d: 5, dv: 5 }, seed = freshSeed(), scale = 1 / Math.sqrt(5);
  const x = inputs(s, seed);
  const ref = refGrads(x, s, scale);
  const q = leaf(x.t.q), k = leaf(x.t.k), v = leaf(x.t.v);
  scope(() => backward(ad.attention(q, k, v, scale), x.t.dOut));
  assertClose(await gpu.read(q.grad!), ref.dq, 1e-5, `ad dq seed=${seed}`);
  assertClose(await gpu.read(k.grad!), ref.dk, 1e-5, `ad dk seed=${seed}`);
  assertClose(await gpu.read(v.grad!), ref.dv, 1e-5, `ad dv seed=${seed}`);
  const kc = constant(x.t.k), q2 = leaf(x.t.q), v2 = leaf(x.t.v);
  scope(() => backward(ad.attention(q2, kc, v2, scale), x.t.dOut));
  if (kc.grad !== null) throw new Error("a constant input received a gradient");
  assertClose(await gpu.read(q2.grad!), ref.dq, 1e-5, `ad dq (constant k) seed=${seed}`);
  assertClose(await gpu.read(v2.grad!), ref.dv, 1e-5, `ad dv (constant k) seed=${seed}`);
});
