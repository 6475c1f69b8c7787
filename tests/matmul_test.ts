import { assertClose, f32, finiteDiff, freshSeed, randArray, testGpu } from "./util.ts";
import {
  columnSum,
  linear,
  linearBackward,
  matmul,
  matmulBackward,
  type MatmulVariant,
} from "../src/ops/matmul.ts";
import * as ad from "../src/autodiff/matmul.ts";
import { backward, constant, leaf } from "../src/autodiff/var.ts";
import { scope, type Tensor } from "../src/tensor.ts";
import { ShapeError } from "../src/gpu/errors.ts";

const gpu = await testGpu();
// Every case runs with the adapter's own variant and, on a software adapter, with the register variant;
// the shared-memory variant (real GPUs) compiles slowly on llvmpipe (~2 s per kernel: workgroup memory is
// zero-initialised), so it runs on a representative subset there (the last test).
const VARIANTS: MatmulVariant[] = gpu.adapter.isSoftware ? ["register"] : ["shared", "register"];

// ---------------------------------------------------------------- float64 reference

interface Operand {
  data: Float64Array;
  batch: number | null;
  r: number;
  c: number;
}

/** alpha op(a) op(b), batched with broadcast, in float64. */
function refMatmul(a: Operand, b: Operand, tA: boolean, tB: boolean, alpha = 1): Float64Array {
  const m = tA ? a.c : a.r, k = tA ? a.r : a.c, n = tB ? b.r : b.c;
  const batch = a.batch ?? b.batch ?? 1;
  const out = new Float64Array(batch * m * n);
  for (let bi = 0; bi < batch; bi++) {
    const oa = a.batch === null ? 0 : bi * a.r * a.c, ob = b.batch === null ? 0 : bi * b.r * b.c;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a.data[oa + (tA ? p * a.c + i : i * a.c + p)];
          const bv = b.data[ob + (tB ? j * b.c + p : p * b.c + j)];
          s += av * bv;
        }
        out[bi * m * n + i * n + j] = alpha * s;
      }
    }
  }
  return out;
}

/** A random operand stored [batch?, r, c] for op(X) of `rows x cols`. */
function make(batch: number | null, rows: number, cols: number, trans: boolean, seed: number): Operand {
  const [r, c] = trans ? [cols, rows] : [rows, cols];
  return { data: randArray((batch ?? 1) * r * c, seed), batch, r, c };
}

function upload(x: Operand): Tensor {
  return gpu.tensor(f32(x.data), x.batch === null ? [x.r, x.c] : [x.batch, x.r, x.c]);
}

// ---------------------------------------------------------------- forward

Deno.test("matmul: forward vs float64, odd shapes, every transpose combination", async () => {
  const shapes: [number, number, number][] = [[1, 1, 1], [7, 13, 5], [33, 65, 17], [4, 8, 12], [9, 3, 64]];
  for (const variant of VARIANTS) {
    for (const [m, n, k] of shapes) {
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          const s = freshSeed();
          const a = make(null, m, k, tA, s), b = make(null, k, n, tB, s + 1);
          const alpha = tA && tB ? 0.5 : 1;
          const out = matmul(gpu, upload(a), upload(b), { transA: tA, transB: tB, alpha, variant });
          const what = `matmul ${variant} ${m}x${n}x${k} tA=${tA} tB=${tB} seed=${s}`;
          if (out.shape.join() !== [m, n].join()) throw new Error(`${what}: shape [${out.shape}]`);
          assertClose(await gpu.read(out), refMatmul(a, b, tA, tB, alpha), 1e-5, what);
        }
      }
    }
  }
});

Deno.test("matmul: batched, with either operand broadcast", async () => {
  const cases: [number | null, number | null][] = [[3, 3], [3, null], [null, 3]];
  for (const variant of VARIANTS) {
    for (const [ba, bb] of cases) {
      for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
        const s = freshSeed();
        const [m, n, k] = [11, 18, 9];
        const a = make(ba, m, k, tA, s), b = make(bb, k, n, tB, s + 1);
        const out = matmul(gpu, upload(a), upload(b), { transA: tA, transB: tB, variant });
        const what = `bmm ${variant} a.batch=${ba} b.batch=${bb} tA=${tA} tB=${tB} seed=${s}`;
        if (out.shape.join() !== [3, m, n].join()) throw new Error(`${what}: shape [${out.shape}]`);
        assertClose(await gpu.read(out), refMatmul(a, b, tA, tB), 1e-5, what);
      }
    }
  }
});

Deno.test("matmul: larger aligned product (vec4 paths, several workgroups), long K", async () => {
  for (const variant of VARIANTS) {
    const s = freshSeed();
    const [m, n, k] = [96, 136, 260];
    const a = make(2, m, k, false, s), b = make(null, k, n, false, s + 1);
    const out = await gpu.read(matmul(gpu, upload(a), upload(b), { variant }));
    assertClose(out, refMatmul(a, b, false, false), 1e-5, `bmm ${variant} 2x${m}x${n}x${k} seed=${s}`);
  }
});

Deno.test("matmul: shape errors name the op", () => {
  const a = gpu.zeros([3, 4]), b = gpu.zeros([5, 6]);
  for (const f of [() => matmul(gpu, a, b), () => matmul(gpu, gpu.zeros([2, 3, 4]), gpu.zeros([3, 4, 6]))]) {
    let err: unknown = null;
    try {
      f();
    } catch (e) {
      err = e;
    }
    if (!(err instanceof ShapeError) || !err.message.startsWith("matmul")) {
      throw new Error(`expected a ShapeError from matmul, got ${err}`);
    }
  }
});

// ---------------------------------------------------------------- backward

/** d/dA and d/dB of sum(dY * alpha op(A) op(B)) by finite differences of the float64 reference. */
function refGrads(a: Operand, b: Operand, tA: boolean, tB: boolean, alpha: number, dy: Float64Array) {
  const ga = finiteDiff((x) => refMatmul({ ...a, data: x }, b, tA, tB, alpha), a.data, dy);
  const gb = finiteDiff((x) => refMatmul(a, { ...b, data: x }, tA, tB, alpha), b.data, dy);
  return { ga, gb };
}

Deno.test("matmul backward: raw kernels vs finite differences, broadcast and transposes", async () => {
  const cases: [number | null, number | null][] = [[null, null], [2, 2], [2, null], [null, 2]];
  for (const variant of VARIANTS) {
    for (const [ba, bb] of cases) {
      for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
        const s = freshSeed();
        const [m, n, k] = [5, 6, 7];
        const a = make(ba, m, k, tA, s), b = make(bb, k, n, tB, s + 1);
        const batch = ba ?? bb;
        const dy = randArray((batch ?? 1) * m * n, s + 2);
        const dyT = gpu.tensor(f32(dy), batch === null ? [m, n] : [batch, m, n]);
        const opts = { transA: tA, transB: tB, alpha: 0.75, variant };
        const { da, db } = matmulBackward(gpu, dyT, upload(a), upload(b), opts);
        const ref = refGrads(a, b, tA, tB, 0.75, dy);
        const what = `${variant} a.batch=${ba} b.batch=${bb} tA=${tA} tB=${tB} seed=${s}`;
        assertClose(await gpu.read(da!), ref.ga, 1e-5, `dA ${what}`);
        assertClose(await gpu.read(db!), ref.gb, 1e-5, `dB ${what}`);
      }
    }
  }
});

Deno.test("matmul autodiff: backward() end to end, batched with broadcast weight", async () => {
  const s = freshSeed();
  const a = make(3, 4, 6, false, s), b = make(null, 6, 5, true, s + 1);
  const dy = randArray(3 * 4 * 5, s + 2);
  const av = leaf(upload(a)), bv = leaf(upload(b));
  scope(() => backward(ad.matmul(av, bv, { transB: true }), gpu.tensor(f32(dy), [3, 4, 5])));
  const ref = refGrads(a, b, false, true, 1, dy);
  assertClose(await gpu.read(av.grad!), ref.ga, 1e-5, `dA seed=${s}`);
  assertClose(await gpu.read(bv.grad!), ref.gb, 1e-5, `dB seed=${s}`);
  if (av.grad!.shape.join() !== "3,4,6" || bv.grad!.shape.join() !== "5,6") throw new Error("grad shapes");
  // a constant operand gets no gradient and its work is skipped
  const cv = constant(upload(a));
  const bw = leaf(upload(b));
  scope(() => backward(ad.matmul(cv, bw, { transB: true }), gpu.tensor(f32(dy), [3, 4, 5])));
  if (cv.grad !== null) throw new Error("a constant received a gradient");
  assertClose(await gpu.read(bw.grad!), ref.gb, 1e-5, `dB (constant A) seed=${s}`);
});

// ---------------------------------------------------------------- linear

function refLinear(
  x: Float64Array,
  w: Float64Array,
  bias: Float64Array | null,
  n: number,
  i: number,
  o: number,
) {
  const y = refMatmul(
    { data: x, batch: null, r: n, c: i },
    { data: w, batch: null, r: o, c: i },
    false,
    true,
  );
  if (bias) { for (let r = 0; r < n; r++) for (let c = 0; c < o; c++) y[r * o + c] += bias[c]; }
  return y;
}

Deno.test("linear: forward with bias vs float64, leading dims kept", async () => {
  for (const variant of VARIANTS) {
    for (const [n, i, o] of [[1, 1, 1], [5, 13, 7], [17, 32, 40], [2, 64, 9]]) {
      const s = freshSeed();
      const x = randArray(n * i, s), w = randArray(o * i, s + 1), b = randArray(o, s + 2);
      const y = linear(gpu, gpu.tensor(f32(x), [n, i]), gpu.tensor(f32(w), [o, i]), gpu.tensor(f32(b)), {
        variant,
      });
      assertClose(
        await gpu.read(y),
        refLinear(x, w, b, n, i, o),
        1e-5,
        `linear ${variant} ${n}x${i}->${o} seed=${s}`,
      );
    }
  }
  const s = freshSeed();
  const x = randArray(2 * 3 * 5, s), w = randArray(4 * 5, s + 1);
  const y = linear(gpu, gpu.tensor(f32(x), [2, 3, 5]), gpu.tensor(f32(w), [4, 5]), null);
  if (y.shape.join() !== "2,3,4") throw new Error(`linear output shape [${y.shape}]`);
  assertClose(await gpu.read(y), refLinear(x, w, null, 6, 5, 4), 1e-5, `linear 3-D no bias seed=${s}`);
});

Deno.test("columnSum: vs float64 on odd shapes", async () => {
  for (const variant of VARIANTS) {
    for (const [r, c] of [[1, 1], [37, 5], [300, 70]]) {
      const s = freshSeed();
      const t = randArray(r * c, s);
      const ref = new Float64Array(c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) ref[j] += t[i * c + j];
      const out = await gpu.read(columnSum(gpu, gpu.tensor(f32(t), [r, c]), { variant }));
      assertClose(out, ref, 1e-5, `columnSum ${variant} ${r}x${c} seed=${s}`);
    }
  }
});

Deno.test("linear backward: raw kernels and autodiff vs finite differences", async () => {
  for (const variant of VARIANTS) {
    const s = freshSeed();
    const [n, i, o] = [5, 7, 6];
    const x = randArray(n * i, s), w = randArray(o * i, s + 1), b = randArray(o, s + 2);
    const dy = randArray(n * o, s + 3);
    const gx = finiteDiff((v) => refLinear(v, w, b, n, i, o), x, dy);
    const gw = finiteDiff((v) => refLinear(x, v, b, n, i, o), w, dy);
    const gb = finiteDiff((v) => refLinear(x, w, v, n, i, o), b, dy);
    const xt = gpu.tensor(f32(x), [n, i]), wt = gpu.tensor(f32(w), [o, i]);
    const r = linearBackward(gpu, gpu.tensor(f32(dy), [n, o]), xt, wt, {}, { variant });
    assertClose(await gpu.read(r.dx!), gx, 1e-5, `linear dx ${variant} seed=${s}`);
    assertClose(await gpu.read(r.dw!), gw, 1e-5, `linear dw ${variant} seed=${s}`);
    assertClose(await gpu.read(r.dbias!), gb, 1e-5, `linear db ${variant} seed=${s}`);
  }
  const s = freshSeed();
  const [n, i, o] = [4, 6, 3];
  const x = randArray(n * i, s), w = randArray(o * i, s + 1), b = randArray(o, s + 2);
  const dy = randArray(n * o, s + 3);
  const xv = leaf(gpu.tensor(f32(x), [n, i])), wv = leaf(gpu.tensor(f32(w), [o, i]));
  const bv = leaf(gpu.tensor(f32(b)));
  scope(() => backward(ad.linear(xv, wv, bv), gpu.tensor(f32(dy), [n, o])));
  assertClose(
    await gpu.read(xv.grad!),
    finiteDiff((v) => refLinear(v, w, b, n, i, o), x, dy),
    1e-5,
    `ad dx ${s}`,
  );
  assertClose(
    await gpu.read(wv.grad!),
    finiteDiff((v) => refLinear(x, v, b, n, i, o), w, dy),
    1e-5,
    `ad dw ${s}`,
  );
  assertClose(
    await gpu.read(bv.grad!),
    finiteDiff((v) => refLinear(x, w, v, n, i, o), b, dy),
    1e-5,
    `ad db ${s}`,
  );
});

Deno.test("matmul shared-memory variant: odd shape x transposes, broadcast backward, bias, column sum", async () => {
  const variant: MatmulVariant = "shared";
  // TN and NT between them take every staging path (A and B, plain and transposed)
  for (const [tA, tB] of [[true, false], [false, true]]) {
    const s = freshSeed();
    const [m, n, k] = [33, 65, 17];
    const a = make(null, m, k, tA, s), b = make(null, k, n, tB, s + 1);
    const out = matmul(gpu, upload(a), upload(b), { transA: tA, transB: tB, alpha: 1.5, variant });
    assertClose(
      await gpu.read(out),
      refMatmul(a, b, tA, tB, 1.5),
      1e-5,
      `shared ${m}x${n}x${k} ${tA} ${tB} seed=${s}`,
    );
  }
  {
    const s = freshSeed();
    const a = make(3, 11, 70, true, s), b = make(null, 70, 72, false, s + 1);
    const out = matmul(gpu, upload(a), upload(b), { transA: true, variant });
    assertClose(await gpu.read(out), refMatmul(a, b, true, false), 1e-5, `shared bmm 3x11x72x70 seed=${s}`);
  }
  {
    const s = freshSeed();
    const a = make(null, 5, 7, false, s), b = make(2, 7, 6, true, s + 1);
    const dy = randArray(2 * 5 * 6, s + 2);
    const opts = { transB: true, variant };
    const { da, db } = matmulBackward(gpu, gpu.tensor(f32(dy), [2, 5, 6]), upload(a), upload(b), opts);
    const ref = refGrads(a, b, false, true, 1, dy);
    assertClose(await gpu.read(da!), ref.ga, 1e-5, `shared dA (batch-summed) seed=${s}`);
    assertClose(await gpu.read(db!), ref.gb, 1e-5, `shared dB seed=${s}`);
  }
  {
    const s = freshSeed();
    const [n, i, o] = [17, 32, 40];
    const x = randArray(n * i, s), w = randArray(o * i, s + 1), b = randArray(o, s + 2);
    const y = linear(gpu, gpu.tensor(f32(x), [n, i]), gpu.tensor(f32(w), [o, i]), gpu.tensor(f32(b)), {
      variant,
    });
    assertClose(await gpu.read(y), refLinear(x, w, b, n, i, o), 1e-5, `shared linear seed=${s}`);
    const t = randArray(37 * 5, s + 3);
    const ref = new Float64Array(5);
    for (let r = 0; r < 37; r++) for (let j = 0; j < 5; j++) ref[j] += t[r * 5 + j];
    const cs = await gpu.read(columnSum(gpu, gpu.tensor(f32(t), [37, 5]), { variant }));
    assertClose(cs, ref, 1e-5, `shared columnSum seed=${s}`);
  }
});
