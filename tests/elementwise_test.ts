/**
 * Elementwise ops: the map family (scalar and vec4 paths, in place, broadcast index maps), binary ops with
 * every broadcast pattern, scalar and unary ops, forward against float64 references and backward (through
 * the Var wrappers and `backward`) against central finite differences of those references.
 */
import { assertClose, f32, finiteDiff, freshSeed, randArray, relErr, testGpu } from "./util.ts";
import { addInPlace, broadcastIndex, map } from "../src/ops/map.ts";
import * as ops from "../src/ops/elementwise.ts";
import * as ad from "../src/autodiff/elementwise.ts";
import { backward, constant, leaf, type Var } from "../src/autodiff/var.ts";
import { scope, type Tensor } from "../src/tensor.ts";
import { ShapeError } from "../src/gpu/errors.ts";

const gpu = await testGpu();

// ---------------------------------------------------------------- float64 references

const sizeOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** `x` of shape `from` (same rank as `to`, dims equal or 1) expanded to `to`, by explicit coordinates. */
function expandRef(x: ArrayLike<number>, from: readonly number[], to: readonly number[]): Float64Array {
  const out = new Float64Array(sizeOf(to));
  for (let i = 0; i < out.length; i++) {
    let rest = i, src = 0, stride = 1;
    for (let d = to.length - 1; d >= 0; d--) {
      const c = rest % to[d];
      rest = Math.floor(rest / to[d]);
      if (from[d] !== 1) src += c * stride;
      stride *= from[d];
    }
    out[i] = x[src];
  }
  return out;
}

/** Sum `g` of shape `to` down to the aligned shape `from`. */
function reduceToRef(g: ArrayLike<number>, from: readonly number[], to: readonly number[]): Float64Array {
  const out = new Float64Array(sizeOf(from));
  const idx = expandRef(Float64Array.from(out, (_, k) => k), from, to);
  for (let i = 0; i < g.length; i++) out[idx[i]] += g[i];
  return out;
}

const BIN: Record<ops.BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
};

// ---------------------------------------------------------------- broadcast patterns

interface Pattern {
  name: string;
  a: number[];
  b: number[];
  /** The operands as the op must read them (the expected reading of 1-D operands), and the output. */
  aAl: number[];
  bAl: number[];
  out: number[];
}

const PATTERNS: Pattern[] = [
  { name: "same shape, odd", a: [7, 13], b: [7, 13], aAl: [7, 13], bAl: [7, 13], out: [7, 13] },
  { name: "numpy, both sides", a: [3, 1, 5], b: [4, 5], aAl: [3, 1, 5], bAl: [1, 4, 5], out: [3, 4, 5] },
  {
    name: "per-channel [C]",
    a: [2, 3, 5, 7],
    b: [3],
    aAl: [2, 3, 5, 7],
    bAl: [1, 3, 1, 1],
    out: [2, 3, 5, 7],
  },
  {
    name: "per-channel [1,C,1,1]",
    a: [2, 3, 5, 7],
    b: [1, 3, 1, 1],
    aAl: [2, 3, 5, 7],
    bAl: [1, 3, 1, 1],
    out: [2, 3, 5, 7],
  },
  {
    name: "per-sample [N]",
    a: [2, 3, 5, 7],
    b: [2],
    aAl: [2, 3, 5, 7],
    bAl: [2, 1, 1, 1],
    out: [2, 3, 5, 7],
  },
  {
    name: "per-sample [N,1,1,1]",
    a: [2, 3, 5, 7],
    b: [2, 1, 1, 1],
    aAl: [2, 3, 5, 7],
    bAl: [2, 1, 1, 1],
    out: [2, 3, 5, 7],
  },
  { name: "per-sample rank 3", a: [5, 3, 4], b: [5], aAl: [5, 3, 4], bAl: [5, 1, 1], out: [5, 3, 4] },
  { name: "trailing [D] rank 2", a: [5, 9], b: [9], aAl: [5, 9], bAl: [1, 9], out: [5, 9] },
  {
    name: "both broadcast",
    a: [2, 1, 5, 7],
    b: [1, 3, 1, 1],
    aAl: [2, 1, 5, 7],
    bAl: [1, 3, 1, 1],
    out: [2, 3, 5, 7],
  },
  { name: "scalar [1]", a: [5, 7], b: [1], aAl: [5, 7], bAl: [1, 1], out: [5, 7] },
  { name: "vector first", a: [3], b: [2, 3, 4, 5], aAl: [1, 3, 1, 1], bAl: [2, 3, 4, 5], out: [2, 3, 4, 5] },
  { name: "vec4 path with broadcast", a: [4, 8], b: [8], aAl: [4, 8], bAl: [1, 8], out: [4, 8] },
];

/** Operand data: b kept away from 0 so that div and its FD are well conditioned. */
function operands(p: Pattern, seed: number): [Float64Array, Float64Array] {
  const a = randArray(sizeOf(p.a), seed);
  const b = randArray(sizeOf(p.b), seed + 1, 0.5, 1.5).map((v, i) => (i % 3 === 1 ? -v : v));
  return [a, b];
}

const binaryRef = (op: ops.BinaryOp, p: Pattern) => (a: ArrayLike<number>, b: ArrayLike<number>) => {
  const ea = expandRef(a, p.aAl, p.out), eb = expandRef(b, p.bAl, p.out);
  return ea.map((v, i) => BIN[op](v, eb[i]));
};

// ---------------------------------------------------------------- map family

Deno.test("map: scalar and vec4 paths, broadcast index, poisoned outputs fully written", async () => {
  for (const n of [1, 6, 63, 64, 1001, 4096, 70001, 70004]) {
    const s = freshSeed();
    const a = randArray(n, s), c = randArray(3, s + 1);
    const ta = gpu.tensor(f32(a)), tc = gpu.tensor(f32(c));
    // out[i] = a[i] * c[i % 3] + i: identity loads (vec4 when n % 4 == 0), a loader, and `i` itself
    const out = await gpu.read(map(gpu, "t", "x0 * x1 + f32(i)", [ta, { t: tc, index: "i % 3u" }]));
    assertClose(out, a.map((v, i) => v * c[i % 3] + i), 1e-6, `map n=${n} seed=${s}`);
    ta.dispose(), tc.dispose();
  }
});

Deno.test("map: addInPlace (vec4 and scalar sizes) and a map without inputs", async () => {
  for (const n of [5, 64, 1003, 2048]) {
    const s = freshSeed();
    const a = randArray(n, s), b = randArray(n, s + 1);
    const ta = gpu.tensor(f32(a)), tb = gpu.tensor(f32(b));
    const r = addInPlace(gpu, ta, tb);
    if (r !== ta) throw new Error("addInPlace must return its first argument");
    assertClose(await gpu.read(ta), a.map((v, i) => v + b[i]), 1e-6, `addInPlace n=${n} seed=${s}`);
  }
  const iota = await gpu.read(map(gpu, "iota", "f32(i) * 0.5", [], { shape: [3, 7] }));
  assertClose(iota, Array.from({ length: 21 }, (_, i) => i * 0.5), 1e-7, "iota");
});

Deno.test("broadcastIndex: merges axes, identity when nothing is broadcast", () => {
  const cases: [number[], number[], string][] = [
    [[2, 3], [2, 3], "i"],
    [[1, 3, 1, 1], [2, 3, 5, 7], "((i / 35u) % 3u)"],
    [[2, 1, 1, 1], [2, 3, 5, 7], "(i / 105u)"],
    [[1, 1, 5, 7], [2, 3, 5, 7], "(i % 35u)"],
    [[1, 1], [4, 5], "0u"],
  ];
  for (const [from, to, want] of cases) {
    const got = broadcastIndex(from, to);
    if (got !== want) throw new Error(`broadcastIndex([${from}], [${to}]) = ${got}, want ${want}`);
  }
});

// ---------------------------------------------------------------- binary ops

Deno.test("binary ops: forward on every broadcast pattern", async () => {
  for (const p of PATTERNS) {
    for (const op of ["add", "sub", "mul", "div"] as const) {
      const s = freshSeed();
      const [a, b] = operands(p, s);
      const ta = gpu.tensor(f32(a), p.a), tb = gpu.tensor(f32(b), p.b);
      const out = ops.binary(gpu, op, ta, tb);
      if (out.shape.join() !== p.out.join()) throw new Error(`${op} ${p.name}: shape [${out.shape}]`);
      assertClose(await gpu.read(out), binaryRef(op, p)(a, b), 1e-6, `${op} ${p.name} seed=${s}`);
      ta.dispose(), tb.dispose(), out.dispose();
    }
  }
});

Deno.test("binary ops: ambiguous and mismatched shapes throw ShapeError", () => {
  const t = (shape: number[]) => gpu.empty(shape);
  const bad: [number[], number[]][] = [
    [[3, 3, 4, 4], [3]], // N == C: per-sample or per-channel?
    [[6, 6], [6]], // N == D: per-sample or trailing?
    [[2, 3, 4, 4], [4]], // a 1-D vector against NCHW fits neither N nor C
    [[2, 3], [4, 3, 2]],
  ];
  for (const [a, b] of bad) {
    let threw = false;
    try {
      ops.add(gpu, t(a), t(b));
    } catch (e) {
      threw = e instanceof ShapeError;
    }
    if (!threw) throw new Error(`add([${a}], [${b}]) must throw ShapeError`);
  }
  // the explicit spellings are never ambiguous
  const x = t([3, 3, 4, 4]), v = t([3]);
  if (ops.add(gpu, x, ops.asPerChannel(v)).shape.join() !== "3,3,4,4") throw new Error("asPerChannel");
  if (ops.add(gpu, x, ops.asPerSample(v, 4)).shape.join() !== "3,3,4,4") throw new Error("asPerSample");
});

/**
 * A broadcast operand's gradient is a float32 sum whose terms can cancel (seed 3511197081: d/db of a scalar
 * b, 35 terms, 1.2e-5 off relative to their sum). It passes relative to the norm, or else element by
 * element within 1e-5 of the sum of its terms' magnitudes `mag`, the scale of float32 summation's error; a
 * wrong gradient misses by the order of `mag` itself.
 */
function assertGradClose(
  out: ArrayLike<number>,
  want: ArrayLike<number>,
  mag: ArrayLike<number>,
  what: string,
) {
  if (relErr(out, want) < 1e-5) return;
  const bad = Array.from(out).findIndex((v, i) => !(Math.abs(v - want[i]) <= 1e-5 * Math.abs(mag[i])));
  if (bad >= 0) {
    throw new Error(
      `${what}: element ${bad} is ${out[bad]}, want ${want[bad]} (terms' magnitude ${mag[bad]}); ` +
        `relative error ${relErr(out, want).toExponential(3)}`,
    );
  }
}

/** Check d/da and d/db of sum(dy * op(a, b)) from `backward` against finite differences. */
async function checkBinaryGrad(op: ops.BinaryOp, p: Pattern, bNeedsGrad = true): Promise<void> {
  const s = freshSeed();
  const [a, b] = operands(p, s);
  const dy = randArray(sizeOf(p.out), s + 2);
  const ref = binaryRef(op, p);
  const va = leaf(gpu.tensor(f32(a), p.a));
  const vb = bNeedsGrad ? leaf(gpu.tensor(f32(b), p.b)) : constant(gpu.tensor(f32(b), p.b));
  const seed = gpu.tensor(f32(dy), p.out);
  const fn = { add: ad.add, sub: ad.sub, mul: ad.mul, div: ad.div }[op];
  scope(() => backward(fn(va, vb), seed));
  const what = `${op} ${p.name} seed=${s}`;
  // every term's magnitude: the same derivatives with |a|, |b| and |dy| (each op's partials then keep a sign)
  const [absA, absB, absDy] = [a, b, dy].map((v) => v.map(Math.abs));
  assertGradClose(
    await gpu.read(va.grad!),
    finiteDiff((x) => ref(x, b), a, dy),
    finiteDiff((x) => ref(x, absB), absA, absDy),
    `d/da ${what}`,
  );
  if (va.grad!.shape.join() !== p.a.join()) throw new Error(`d/da shape [${va.grad!.shape}] ${what}`);
  if (bNeedsGrad) {
    assertGradClose(
      await gpu.read(vb.grad!),
      finiteDiff((x) => ref(a, x), b, dy),
      finiteDiff((x) => ref(absA, x), absB, absDy),
      `d/db ${what}`,
    );
  } else if (vb.grad) throw new Error(`a constant got a gradient: ${what}`);
  for (const t of [va.value, vb.value, seed, va.grad!, vb.grad]) t?.dispose();
}

Deno.test("binary ops: backward through every broadcast pattern vs finite differences", async () => {
  for (const p of PATTERNS) {
    for (const op of ["add", "sub", "mul", "div"] as const) await checkBinaryGrad(op, p);
  }
  await checkBinaryGrad("mul", PATTERNS[2], false);
  await checkBinaryGrad("div", PATTERNS[4], false);
});

Deno.test("asPerChannel / asPerSample Vars: gradients reach the 1-D parameter", async () => {
  const s = freshSeed();
  const x = randArray(3 * 3 * 2 * 2, s), v = randArray(3, s + 1), dy = randArray(36, s + 2);
  const vx = leaf(gpu.tensor(f32(x), [3, 3, 2, 2])), vv = leaf(gpu.tensor(f32(v)));
  const seed = gpu.tensor(f32(dy), [3, 3, 2, 2]);
  for (const [how, al] of [["channel", [1, 3, 1, 1]], ["sample", [3, 1, 1, 1]]] as const) {
    vv.zeroGrad();
    const wrap = how === "channel" ? ad.asPerChannel(vv) : ad.asPerSample(vv, 4);
    scope(() => backward(ad.mul(vx, wrap), seed));
    const want = reduceToRef(expandRef(x, [3, 3, 2, 2], [3, 3, 2, 2]).map((xv, i) => xv * dy[i]), al, [
      3,
      3,
      2,
      2,
    ]);
    assertClose(await gpu.read(vv.grad!), want, 1e-5, `per-${how} grad seed=${s}`);
  }
});

// ---------------------------------------------------------------- unary and scalar ops

interface Unary {
  name: string;
  raw: (x: Tensor) => Tensor;
  v: (x: Var) => Var;
  ref: (x: number) => number;
  /** Inputs: [lo, hi) and whether to flip every other sign (to keep |x| away from 0). */
  lo: number;
  hi: number;
  signed?: boolean;
}

const UNARY: Unary[] = [
  { name: "neg", raw: (x) => ops.neg(gpu, x), v: ad.neg, ref: (x) => -x, lo: -2, hi: 2 },
  {
    name: "silu",
    raw: (x) => ops.silu(gpu, x),
    v: ad.silu,
    ref: (x) => x / (1 + Math.exp(-x)),
    lo: -4,
    hi: 4,
  },
  {
    name: "relu",
    raw: (x) => ops.relu(gpu, x),
    v: ad.relu,
    ref: (x) => Math.max(x, 0),
    lo: 0.05,
    hi: 2,
    signed: true,
  },
  { name: "tanh", raw: (x) => ops.tanh(gpu, x), v: ad.tanh, ref: Math.tanh, lo: -3, hi: 3 },
  { name: "exp", raw: (x) => ops.exp(gpu, x), v: ad.exp, ref: Math.exp, lo: -2, hi: 2 },
  { name: "log", raw: (x) => ops.log(gpu, x), v: ad.log, ref: Math.log, lo: 0.2, hi: 3 },
  { name: "sqrt", raw: (x) => ops.sqrt(gpu, x), v: ad.sqrt, ref: Math.sqrt, lo: 0.2, hi: 3 },
  { name: "sign", raw: (x) => ops.sign(gpu, x), v: ad.sign, ref: Math.sign, lo: 0.05, hi: 2, signed: true },
  { name: "abs", raw: (x) => ops.abs(gpu, x), v: ad.abs, ref: Math.abs, lo: 0.05, hi: 2, signed: true },
  { name: "square", raw: (x) => ops.square(gpu, x), v: ad.square, ref: (x) => x * x, lo: -2, hi: 2 },
  {
    name: "clamp(-0.5, 0.7)",
    raw: (x) => ops.clamp(gpu, x, -0.5, 0.7),
    v: (x) => ad.clamp(x, -0.5, 0.7),
    ref: (x) => Math.min(Math.max(x, -0.5), 0.7),
    lo: -1.5,
    hi: 1.5,
  },
  {
    name: "addScalar(-0.3)",
    raw: (x) => ops.addScalar(gpu, x, -0.3),
    v: (x) => ad.addScalar(x, -0.3),
    ref: (x) => x - 0.3,
    lo: -2,
    hi: 2,
  },
  {
    name: "mulScalar(2.5)",
    raw: (x) => ops.mulScalar(gpu, x, 2.5),
    v: (x) => ad.mulScalar(x, 2.5),
    ref: (x) => x * 2.5,
    lo: -2,
    hi: 2,
  },
  ...[3, 2, -2, 0.5, 1.5, 1, 0].map((p): Unary => ({
    name: `powScalar(${p})`,
    raw: (x) => ops.powScalar(gpu, x, p),
    v: (x) => ad.powScalar(x, p),
    ref: (x) => x ** p,
    lo: 0.2,
    hi: 2,
    signed: Number.isInteger(p),
  })),
];

function unaryInput(u: Unary, n: number, seed: number): Float64Array {
  const x = randArray(n, seed, u.lo, u.hi);
  if (!u.signed) return x;
  return x.map((v, i) => (i % 2 ? -v : v));
}

/** Inputs kept away from the clamp bounds (FD across a kink is meaningless). */
const awayFromKinks = (u: Unary, x: Float64Array) =>
  u.name.startsWith("clamp")
    ? x.map((v) => (Math.abs(v + 0.5) < 0.05 || Math.abs(v - 0.7) < 0.05 ? v + 0.12 : v))
    : x;

Deno.test("unary and scalar ops: forward vs float64 (odd and vec4 sizes)", async () => {
  for (const u of UNARY) {
    for (const n of [1001, 1024]) {
      const s = freshSeed();
      const x = awayFromKinks(u, unaryInput(u, n, s));
      const tx = gpu.tensor(f32(x), [n]);
      const out = u.raw(tx);
      assertClose(await gpu.read(out), x.map(u.ref), 1e-5, `${u.name} n=${n} seed=${s}`);
      tx.dispose(), out.dispose();
    }
  }
});

Deno.test("unary and scalar ops: backward vs finite differences", async () => {
  for (const u of UNARY) {
    const s = freshSeed();
    const shape = [3, 5, 7];
    const n = sizeOf(shape);
    const x = awayFromKinks(u, unaryInput(u, n, s));
    const dy = randArray(n, s + 1);
    const vx = leaf(gpu.tensor(f32(x), shape));
    const seed = gpu.tensor(f32(dy), shape);
    scope(() => backward(u.v(vx), seed));
    const want = finiteDiff((xs) => xs.map(u.ref), x, dy);
    const got = await gpu.read(vx.grad!);
    // sign and pow(0) have zero gradient: compare absolutely
    const zero = want.every((v) => v === 0);
    if (zero && got.some((v) => v !== 0)) throw new Error(`${u.name}: nonzero gradient seed=${s}`);
    if (!zero) assertClose(got, want, 1e-5, `${u.name} backward seed=${s}`);
    vx.value.dispose(), vx.grad!.dispose(), seed.dispose();
  }
});

Deno.test("unary ops: documented choices at kinks and extremes", async () => {
  const x = gpu.tensor(f32([0, -0.5, 0.7, 1, -1, 100, -100, -1000]));
  const g = gpu.tensor(f32([1, 1, 1, 1, 1, 1, 1, 1]));
  const check = async (t: Tensor, want: number[], what: string) => {
    const got = await gpu.read(t);
    if (got.some((v, i) => !Object.is(v, want[i]) && v !== want[i])) throw new Error(`${what}: ${got}`);
  };
  await check(ops.reluBackward(gpu, x, g), [0, 0, 1, 1, 0, 1, 0, 0], "relu' (0 at 0)");
  await check(ops.absBackward(gpu, x, g), [0, -1, 1, 1, -1, 1, -1, -1], "abs' (0 at 0)");
  await check(ops.signBackward(gpu, g), [0, 0, 0, 0, 0, 0, 0, 0], "sign' = 0");
  await check(ops.clampBackward(gpu, x, g, -0.5, 0.7), [1, 1, 1, 0, 0, 0, 0, 0], "clamp' (bounds pass)");
  const th = await gpu.read(ops.tanh(gpu, x));
  assertClose(th.slice(0, 5), [0, -0.5, 0.7, 1, -1].map(Math.tanh), 1e-6, "tanh");
  if (th[5] !== 1 || th[6] !== -1 || th[7] !== -1) throw new Error(`tanh must saturate: ${th}`);
  const sx = await gpu.read(ops.silu(gpu, x));
  if (!sx.every(Number.isFinite) || sx[7] !== 0 || sx[5] !== 100) throw new Error(`silu extremes: ${sx}`);
  const sg = await gpu.read(ops.siluBackward(gpu, x, g));
  if (!sg.every(Number.isFinite) || sg[7] !== 0 || sg[5] !== 1) throw new Error(`silu' extremes: ${sg}`);
});
