/**
 * Reductions: sum/mean over axis sets (both kernel variants), long sums, per-sample L2/Linf norms,
 * forward against float64 references and backward (through the Var wrappers) against finite differences.
 */
import { assertClose, f32, finiteDiff, freshSeed, randArray, testGpu } from "./util.ts";
import * as ops from "../src/ops/reduce.ts";
import * as ad from "../src/autodiff/reduce.ts";
import { backward, leaf } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";
import { ShapeError } from "../src/gpu/errors.ts";

const gpu = await testGpu();

// ---------------------------------------------------------------- float64 references

const sizeOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** For each element of `shape`, the index of its output when reducing over `axes` (kept axes in order). */
function outIndex(shape: readonly number[], axes: readonly number[]): Int32Array {
  const idx = new Int32Array(sizeOf(shape));
  for (let i = 0; i < idx.length; i++) {
    let rest = i, o = 0, stride = 1;
    for (let d = shape.length - 1; d >= 0; d--) {
      const c = rest % shape[d];
      rest = Math.floor(rest / shape[d]);
      if (!axes.includes(d)) {
        o += c * stride;
        stride *= shape[d];
      }
    }
    idx[i] = o;
  }
  return idx;
}

type Kind = "sum" | "mean" | "l2" | "linf";

function reduceRef(x: ArrayLike<number>, shape: readonly number[], axes: readonly number[], kind: Kind) {
  const idx = outIndex(shape, axes);
  const outs = sizeOf(shape.filter((_, d) => !axes.includes(d)));
  const out = new Float64Array(outs);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (kind === "linf") out[idx[i]] = Math.max(out[idx[i]], Math.abs(v));
    else out[idx[i]] += kind === "l2" ? v * v : v;
  }
  const count = x.length / outs;
  return out.map((v) => (kind === "mean" ? v / count : kind === "l2" ? Math.sqrt(v) : v));
}

const allBut0 = (shape: readonly number[]) => shape.map((_, d) => d).slice(1);

// ---------------------------------------------------------------- forward

const CASES: { name: string; shape: number[]; axes: number[] }[] = [
  { name: "all", shape: [3, 5, 7], axes: [0, 1, 2] },
  { name: "trailing (per-sample)", shape: [5, 3, 7, 9], axes: [1, 2, 3] },
  { name: "leading", shape: [37, 11], axes: [0] },
  { name: "NCHW per-channel", shape: [3, 5, 7, 9], axes: [0, 2, 3] },
  { name: "general {1, 3}", shape: [2, 3, 4, 5, 3], axes: [1, 3] },
  { name: "many outputs, short rows", shape: [1001, 3], axes: [1] },
  { name: "size-1 axes", shape: [4, 1, 6, 1], axes: [1, 2] },
  { name: "long rows, few outputs (2 passes)", shape: [3, 2000], axes: [1] },
  { name: "long columns (2 passes, leading)", shape: [3000, 5], axes: [0] },
  { name: "per-channel, long (2 passes)", shape: [4, 3, 30, 31], axes: [0, 2, 3] },
  { name: "no axes (a copy)", shape: [3, 4], axes: [] },
];

Deno.test("reduce: sum and mean over axis sets, both kernel variants, poisoned outputs", async () => {
  for (const c of CASES) {
    for (const strided of [false, true]) {
      const s = freshSeed();
      const x = randArray(sizeOf(c.shape), s);
      const tx = gpu.tensor(f32(x), c.shape);
      const outShape = c.shape.filter((_, d) => !c.axes.includes(d));
      const what = `${c.name} [${c.shape}] axes [${c.axes}] strided=${strided} seed=${s}`;
      const y = ops.reduce(
        gpu,
        "sum",
        tx,
        c.axes,
        { kind: "sum" },
        outShape.length ? outShape : [1],
        strided,
      );
      assertClose(await gpu.read(y), reduceRef(x, c.shape, c.axes, "sum"), 1e-5, `sum ${what}`);
      y.dispose(), tx.dispose();
    }
    // the public entry points (variant chosen by the adapter), with keepDims
    const s = freshSeed();
    const x = randArray(sizeOf(c.shape), s);
    const tx = gpu.tensor(f32(x), c.shape);
    const m = ops.mean(gpu, tx, c.axes, { keepDims: true });
    const kept = c.shape.map((n, d) => (c.axes.includes(d) ? 1 : n));
    if (m.shape.join() !== kept.join()) throw new Error(`keepDims shape [${m.shape}] for ${c.name}`);
    assertClose(await gpu.read(m), reduceRef(x, c.shape, c.axes, "mean"), 1e-5, `mean ${c.name} seed=${s}`);
    m.dispose(), tx.dispose();
  }
});

Deno.test("reduce: 100k-element sums (3 passes) stay accurate, per-channel over 100k elements", async () => {
  for (const strided of [false, true]) {
    const s = freshSeed();
    const n = 100_003;
    // a positive offset makes the sum large relative to its terms: the hard case for float32 sums
    const x = randArray(n, s, -0.5, 1.5);
    const tx = gpu.tensor(f32(x));
    const y = ops.reduce(gpu, "sum", tx, [0], { kind: "sum" }, [1], strided);
    assertClose(
      await gpu.read(y),
      reduceRef(x, [n], [0], "sum"),
      1e-4,
      `100k sum strided=${strided} seed=${s}`,
    );
    const shape = [4, 5, 100, 50];
    const xc = randArray(sizeOf(shape), s + 1, -0.5, 1.5);
    const tc = gpu.tensor(f32(xc), shape);
    const yc = ops.reduce(gpu, "sum", tc, [0, 2, 3], { kind: "sum" }, [5], strided);
    const want = reduceRef(xc, shape, [0, 2, 3], "sum");
    assertClose(await gpu.read(yc), want, 1e-4, `per-channel 100k strided=${strided} seed=${s}`);
    for (const t of [tx, y, tc, yc]) t.dispose();
  }
});

Deno.test("reduce: axis handling (negative, default all, errors)", async () => {
  const s = freshSeed();
  const shape = [2, 3, 4];
  const x = randArray(24, s);
  const tx = gpu.tensor(f32(x), shape);
  const last = ops.sum(gpu, tx, -1);
  if (last.shape.join() !== "2,3") throw new Error(`axis -1 gave [${last.shape}]`);
  assertClose(await gpu.read(last), reduceRef(x, shape, [2], "sum"), 1e-5, `axis -1 seed=${s}`);
  const all = ops.sum(gpu, tx);
  if (all.shape.join() !== "1") throw new Error(`sum of all gave [${all.shape}]`);
  assertClose(await gpu.read(all), reduceRef(x, shape, [0, 1, 2], "sum"), 1e-5, `all seed=${s}`);
  for (const axes of [[3], [0, 0], [-4]]) {
    let threw = false;
    try {
      ops.sum(gpu, tx, axes);
    } catch (e) {
      threw = e instanceof ShapeError;
    }
    if (!threw) throw new Error(`axes [${axes}] must throw ShapeError`);
  }
});

// ---------------------------------------------------------------- norms

/** Random samples whose largest |x| is unique by a margin (so Linf is differentiable there). */
function samples(shape: readonly number[], seed: number): Float64Array {
  const x = randArray(sizeOf(shape), seed);
  const per = sizeOf(shape) / shape[0];
  for (let n = 0; n < shape[0]; n++) {
    let k = n * per;
    for (let i = n * per; i < (n + 1) * per; i++) if (Math.abs(x[i]) > Math.abs(x[k])) k = i;
    x[k] = Math.fround(Math.sign(x[k] || 1) * (Math.abs(x[k]) + 0.25));
  }
  return x;
}

Deno.test("norms per sample: forward (both variants, odd and long rows)", async () => {
  for (const shape of [[4, 3, 5, 7], [3, 1001], [2, 70001], [6]]) {
    for (const strided of [false, true]) {
      const s = freshSeed();
      const x = samples(shape, s);
      const tx = gpu.tensor(f32(x), shape);
      const axes = allBut0(shape);
      const l2 = ops.reduce(
        gpu,
        "l2",
        tx,
        axes,
        { kind: "sum", pre: "v * v", post: "sqrt(acc)" },
        [shape[0]],
        strided,
      );
      const linf = ops.reduce(gpu, "linf", tx, axes, { kind: "max", pre: "abs(v)" }, [shape[0]], strided);
      const what = `[${shape}] strided=${strided} seed=${s}`;
      const tol = sizeOf(shape) > 10000 ? 1e-4 : 1e-5;
      assertClose(await gpu.read(l2), reduceRef(x, shape, axes, "l2"), tol, `L2 ${what}`);
      assertClose(await gpu.read(linf), reduceRef(x, shape, axes, "linf"), 1e-7, `Linf ${what}`);
      for (const t of [tx, l2, linf]) t.dispose();
    }
    const s = freshSeed();
    const x = samples(shape, s);
    const tx = gpu.tensor(f32(x), shape);
    const tol = sizeOf(shape) > 10000 ? 1e-4 : 1e-5;
    const l2 = await gpu.read(ops.normL2PerSample(gpu, tx));
    assertClose(l2, reduceRef(x, shape, allBut0(shape), "l2"), tol, `normL2PerSample [${shape}] seed=${s}`);
    const linf = await gpu.read(ops.normLinfPerSample(gpu, tx));
    assertClose(
      linf,
      reduceRef(x, shape, allBut0(shape), "linf"),
      1e-7,
      `normLinfPerSample [${shape}] seed=${s}`,
    );
  }
});

// ---------------------------------------------------------------- backward

Deno.test("reductions: backward through Vars vs finite differences", async () => {
  const cases: { shape: number[]; axes?: number[]; kind: Kind }[] = [
    { shape: [3, 4, 5], kind: "sum" },
    { shape: [3, 4, 5], kind: "mean" },
    { shape: [2, 3, 4, 5], axes: [0, 2, 3], kind: "sum" },
    { shape: [2, 3, 4, 5], axes: [0, 2, 3], kind: "mean" },
    { shape: [5, 3, 7], axes: [1, 2], kind: "mean" },
    { shape: [7, 3], axes: [0], kind: "sum" },
    { shape: [3, 2, 3, 3], kind: "l2" },
    { shape: [3, 2, 3, 3], kind: "linf" },
    { shape: [4, 7], kind: "l2" },
    { shape: [4, 7], kind: "linf" },
  ];
  for (const c of cases) {
    const s = freshSeed();
    const x = samples(c.shape, s);
    const axes = c.kind === "l2" || c.kind === "linf" ? allBut0(c.shape) : c.axes ?? c.shape.map((_, d) => d);
    const outs = sizeOf(c.shape.filter((_, d) => !axes.includes(d)));
    const dy = randArray(outs, s + 1);
    const vx = leaf(gpu.tensor(f32(x), c.shape));
    const seed = gpu.tensor(f32(dy));
    scope(() => {
      const y = c.kind === "sum"
        ? ad.sum(vx, c.axes)
        : c.kind === "mean"
        ? ad.mean(vx, c.axes)
        : c.kind === "l2"
        ? ad.normL2PerSample(vx)
        : ad.normLinfPerSample(vx);
      backward(y, seed);
    });
    const want = finiteDiff((xs) => reduceRef(xs, c.shape, axes, c.kind), x, dy);
    const what = `${c.kind} [${c.shape}] axes [${axes}] seed=${s}`;
    assertClose(await gpu.read(vx.grad!), want, 1e-5, `backward ${what}`);
    if (vx.grad!.shape.join() !== c.shape.join()) throw new Error(`grad shape [${vx.grad!.shape}] ${what}`);
    vx.value.dispose(), vx.grad!.dispose(), seed.dispose();
  }
});

Deno.test("norms: documented subgradients (L2 at 0 is 0; Linf ties share the gradient equally)", async () => {
  // sample 0: all zeros; sample 1: two elements tie for max |x| with opposite signs; sample 2: one max
  const x = f32([0, 0, 0, 0, 0.5, -2, 1, 2, 3, -1, 0.5, 0]);
  const vx = leaf(gpu.tensor(x, [3, 4]));
  const g = gpu.tensor(f32([1, 1, 1]));
  scope(() => backward(ad.normL2PerSample(vx), g));
  const l2 = await gpu.read(vx.grad!);
  if (!l2.slice(0, 4).every((v) => v === 0)) throw new Error(`L2 grad of a zero sample: ${l2.slice(0, 4)}`);
  vx.zeroGrad();
  scope(() => backward(ad.normLinfPerSample(vx), g));
  const li = Array.from(await gpu.read(vx.grad!));
  const want = [0, 0, 0, 0, 0, -0.5, 0, 0.5, 1, 0, 0, 0];
  if (li.some((v, i) => v !== want[i])) throw new Error(`Linf subgradient ${li}, want ${want}`);
});
