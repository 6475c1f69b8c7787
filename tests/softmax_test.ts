import { assertClose, f32, finiteDiff, freshSeed, randArray, rng, testGpu } from "./util.ts";
import {
  crossEntropy,
  crossEntropyBackward,
  crossEntropyPerSample,
  logSoftmax,
  logSoftmaxBackward,
  softmax,
  softmaxBackward,
  type SoftmaxVariant,
} from "../src/ops/softmax.ts";
import * as ad from "../src/autodiff/softmax.ts";
import { backward, leaf, type Var } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";

const gpu = await testGpu();
// both variants run everywhere: the workgroup variant's small reduction array compiles quickly on llvmpipe
const VARIANTS: SoftmaxVariant[] = ["row", "workgroup"];

// ---------------------------------------------------------------- float64 references

function refRows(x: Float64Array, cols: number, f: (row: Float64Array) => Float64Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r * cols < x.length; r++) out.set(f(x.subarray(r * cols, (r + 1) * cols)), r * cols);
  return out;
}

function refLogSoftmaxRow(row: Float64Array): Float64Array {
  const m = Math.max(...row);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return row.map((v) => v - lse);
}
const refLogSoftmax = (x: Float64Array, cols: number) => refRows(x, cols, refLogSoftmaxRow);
const refSoftmax = (x: Float64Array, cols: number) =>
  refRows(x, cols, (r) => refLogSoftmaxRow(r).map(Math.exp));

function refCePerSample(x: Float64Array, labels: Uint32Array, c: number): Float64Array {
  const ls = refLogSoftmax(x, c);
  return Float64Array.from(labels, (l, i) => -ls[i * c + l]);
}
const refCeMean = (x: Float64Array, labels: Uint32Array, c: number) => {
  const l = refCePerSample(x, labels, c);
  return [l.reduce((a, b) => a + b, 0) / l.length];
};

function randLabels(n: number, c: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => Math.floor(r() * c));
}

/** Inputs with a large offset (+120 or -90), so that an unstabilised exp would overflow or underflow. */
function logits(n: number, seed: number): Float64Array {
  return randArray(n, seed, -4, 4).map((v) => Math.fround(v + (seed % 2 ? 120 : -90)));
}

const SHAPES: number[][] = [[1, 1], [7, 13], [3, 5, 33], [2, 1000], [1, 3001]];

// ---------------------------------------------------------------- forward

Deno.test("softmax / logSoftmax: forward vs float64, odd and long rows, large offsets, both variants", async () => {
  for (const variant of VARIANTS) {
    for (const shape of SHAPES) {
      const s = freshSeed();
      const n = shape.reduce((a, b) => a * b), cols = shape[shape.length - 1];
      const x = logits(n, s);
      const xt = gpu.tensor(f32(x), shape);
      const what = `${variant} [${shape}] seed=${s}`;
      const y = softmax(gpu, xt, { variant });
      if (y.shape.join() !== shape.join()) throw new Error(`softmax shape [${y.shape}]`);
      assertClose(await gpu.read(y), refSoftmax(x, cols), 1e-5, `softmax ${what}`);
      assertClose(
        await gpu.read(logSoftmax(gpu, xt, { variant })),
        refLogSoftmax(x, cols),
        1e-5,
        `logSoftmax ${what}`,
      );
    }
  }
});

Deno.test("softmax / logSoftmax backward kernels vs finite differences, both variants", async () => {
  for (const variant of VARIANTS) {
    for (const shape of [[1, 1], [3, 7], [2, 2, 33]]) {
      const s = freshSeed();
      const n = shape.reduce((a, b) => a * b), cols = shape[shape.length - 1];
      const x = randArray(n, s, -3, 3), dy = randArray(n, s + 1);
      const xt = gpu.tensor(f32(x), shape), dyt = gpu.tensor(f32(dy), shape);
      const what = `${variant} [${shape}] seed=${s}`;
      const y = softmax(gpu, xt, { variant });
      const dx = await gpu.read(softmaxBackward(gpu, y, dyt, { variant }));
      assertClose(dx, finiteDiff((v) => refSoftmax(v, cols), x, dy), 1e-5, `softmax dx ${what}`);
      const ly = logSoftmax(gpu, xt, { variant });
      const ldx = await gpu.read(logSoftmaxBackward(gpu, ly, dyt, { variant }));
      assertClose(ldx, finiteDiff((v) => refLogSoftmax(v, cols), x, dy), 1e-5, `logSoftmax dx ${what}`);
    }
  }
});

// ---------------------------------------------------------------- cross-entropy

Deno.test("crossEntropy: mean and per-sample vs float64, several labels, both variants", async () => {
  for (const variant of VARIANTS) {
    for (const [n, c] of [[1, 1], [5, 10], [37, 3], [4, 1000]]) {
      const s = freshSeed();
      const x = logits(n * c, s), labels = randLabels(n, c, s + 1);
      const xt = gpu.tensor(f32(x), [n, c]), lt = gpu.tensor(labels);
      const what = `${variant} ${n}x${c} seed=${s}`;
      const per = crossEntropyPerSample(gpu, xt, lt, { variant });
      assertClose(await gpu.read(per), refCePerSample(x, labels, c), 1e-5, `CE per sample ${what}`);
      const mean = crossEntropy(gpu, xt, lt, { variant });
      if (mean.shape.join() !== "1") throw new Error(`CE mean shape [${mean.shape}]`);
      assertClose(await gpu.read(mean), refCeMean(x, labels, c), 1e-5, `CE mean ${what}`);
    }
  }
});

Deno.test("crossEntropy: a label out of range gives NaN for that sample only", async () => {
  const x = gpu.tensor(f32(randArray(3 * 4, freshSeed())), [3, 4]);
  const out = await gpu.read(crossEntropyPerSample(gpu, x, gpu.tensor(new Uint32Array([0, 4, 3]))));
  if (!Number.isFinite(out[0]) || !Number.isNaN(out[1]) || !Number.isFinite(out[2])) {
    throw new Error(`expected [finite, NaN, finite], got [${out}]`);
  }
});

Deno.test("crossEntropy backward kernel vs finite differences (mean and per sample), both variants", async () => {
  for (const variant of VARIANTS) {
    for (const [n, c] of [[1, 1], [4, 7], [3, 33]]) {
      const s = freshSeed();
      const x = randArray(n * c, s, -3, 3), labels = randLabels(n, c, s + 1);
      const xt = gpu.tensor(f32(x), [n, c]), lt = gpu.tensor(labels);
      const what = `${variant} ${n}x${c} seed=${s}`;
      const g = randArray(1, s + 2), gs = randArray(n, s + 3);
      const dMean = crossEntropyBackward(gpu, xt, lt, gpu.tensor(f32(g)), false, { variant });
      const refMean = finiteDiff((v) => refCeMean(v, labels, c), x, g);
      assertClose(await gpu.read(dMean), refMean, 1e-5, `CE mean dx ${what}`);
      const dPer = crossEntropyBackward(gpu, xt, lt, gpu.tensor(f32(gs)), true, { variant });
      const refPer = finiteDiff((v) => refCePerSample(v, labels, c), x, gs);
      assertClose(await gpu.read(dPer), refPer, 1e-5, `CE per-sample dx ${what}`);
    }
  }
});

// ---------------------------------------------------------------- autodiff

Deno.test("softmax autodiff: backward() through softmax, logSoftmax and both cross-entropies", async () => {
  const s = freshSeed();
  const [n, c] = [6, 11];
  const x = randArray(n * c, s, -3, 3), dy = randArray(n * c, s + 1), labels = randLabels(n, c, s + 2);
  const lt = gpu.tensor(labels);
  type Case = [string, (v: Var) => Var, (v: Float64Array) => ArrayLike<number>, ArrayLike<number> | null];
  const cases: Case[] = [
    ["softmax", (v) => ad.softmax(v), (v) => refSoftmax(v, c), dy],
    ["logSoftmax", (v) => ad.logSoftmax(v), (v) => refLogSoftmax(v, c), dy],
    ["crossEntropy", (v) => ad.crossEntropy(v, lt), (v) => refCeMean(v, labels, c), null],
    [
      "crossEntropyPerSample",
      (v) => ad.crossEntropyPerSample(v, lt),
      (v) => refCePerSample(v, labels, c),
      dy.subarray(0, n),
    ],
  ];
  for (const [name, f, ref, seed] of cases) {
    const xv = leaf(gpu.tensor(f32(x), [n, c]));
    scope(() => backward(f(xv), seed ? gpu.tensor(f32(seed)) : undefined));
    const want = finiteDiff(ref, x, seed ?? [1]);
    assertClose(await gpu.read(xv.grad!), want, 1e-5, `${name} autodiff seed=${s}`);
  }
});
