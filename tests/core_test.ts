import { assertClose, f32, freshSeed, randArray, testGpu } from "./util.ts";
import { map } from "../src/ops/map.ts";
import { backward, leaf, noGrad, record, type Var } from "../src/autodiff/var.ts";
import { checkpoint } from "../src/autodiff/checkpoint.ts";
import { scope, scopeAsync, type Tensor } from "../src/tensor.ts";
import { wgsl } from "../src/gpu/template.ts";

const gpu = await testGpu();

// two tiny ops for exercising the tape; the real op set lives in src/autodiff/elementwise.ts
const mulv = (a: Var, b: Var): Var =>
  record("mul", map(gpu, "mul", "x0 * x1", [a.value, b.value]), [a, b], (g) => [
    map(gpu, "mul", "x0 * x1", [g, b.value]),
    map(gpu, "mul", "x0 * x1", [g, a.value]),
  ]);
const sinv = (a: Var): Var =>
  record(
    "sin",
    map(gpu, "sin", "sin(x0)", [a.value]),
    [a],
    (g) => [map(gpu, "dsin", "x0 * cos(x1)", [g, a.value])],
  );

Deno.test("template: conditionals and placeholders", () => {
  const t = "a\n//#if X\nb {{V}}\n//#elif Y\nc\n//#else\nd\n//#endif\ne";
  if (wgsl(t, { X: 1, V: 7 }) !== "a\nb 7\ne") throw new Error(wgsl(t, { X: 1, V: 7 }));
  if (wgsl(t, { Y: true }) !== "a\nc\ne") throw new Error("elif");
  if (wgsl(t, {}) !== "a\nd\ne") throw new Error("else");
  let threw = false;
  try {
    wgsl("{{MISSING}}", {});
  } catch {
    threw = true;
  }
  if (!threw) throw new Error("a missing placeholder must throw");
});

Deno.test("scope: frees temporaries, hands the result to the parent scope, frees all on a throw", async () => {
  const made: Tensor[] = [];
  const make = () => {
    const t = gpu.empty([4]);
    made.push(t);
    return t;
  };
  for (
    const run of [
      <T>(f: () => T) => Promise.resolve(scope(f)),
      <T>(f: () => T) => scopeAsync(() => Promise.resolve().then(f)),
    ]
  ) {
    made.length = 0;
    let inner: Tensor | null = null;
    const outer = await run(() => {
      make();
      inner = scope(() => {
        make();
        return { value: make() };
      }).value;
      if (inner.isDisposed) throw new Error("the inner result must survive its own scope");
      return [inner];
    });
    const [tmpOuter, tmpInner, kept] = made;
    if (!tmpOuter.isDisposed || !tmpInner.isDisposed) throw new Error("temporaries must be freed");
    if (kept.isDisposed || outer[0] !== kept) throw new Error("the result must outlive both scopes");
    kept.dispose();
    made.length = 0;
    let threw = false;
    try {
      await run(() => {
        make();
        throw new Error("boom");
      });
    } catch {
      threw = true;
    }
    if (!threw || !made[0].isDisposed) throw new Error("a throwing scope must rethrow and free its tensors");
  }
});

Deno.test("map: forward matches float64, poisoned output fully written", async () => {
  for (const n of [1, 63, 64, 1000, 70001]) {
    const s = freshSeed();
    const a = randArray(n, s), b = randArray(n, s + 1);
    const ta = gpu.tensor(f32(a)), tb = gpu.tensor(f32(b));
    const out = await gpu.read(map(gpu, "fma", "x0 * x1 + x0", [ta, tb]));
    // elementwise against float32 rounding of the two terms: a relative error over the whole array would
    // fail on a cancelling a * b + a (b near -1) when n is small
    for (let i = 0; i < n; i++) {
      const err = Math.abs(out[i] - (a[i] * b[i] + a[i])),
        bound = 2 ** -22 * (Math.abs(a[i] * b[i]) + Math.abs(a[i]));
      if (!(err <= bound)) {
        throw new Error(`map n=${n} seed=${s}: element ${i} is ${out[i]}, error ${err} > ${bound}`);
      }
    }
  }
});

Deno.test("autodiff: product rule through a shared input, accumulation across calls", async () => {
  const n = 37, s = freshSeed();
  const x = randArray(n, s);
  const xv = leaf(gpu.tensor(f32(x)));
  scope(() => backward(mulv(sinv(xv), xv))); // d/dx [x sin x] = sin x + x cos x
  const ref = x.map((v) => Math.sin(v) + v * Math.cos(v));
  assertClose(await gpu.read(xv.grad!), ref, 1e-5, `grad seed=${s}`);
  scope(() => backward(mulv(sinv(xv), xv)));
  assertClose(await gpu.read(xv.grad!), ref.map((v) => 2 * v), 1e-5, "accumulated grad");
  xv.zeroGrad();
  const y = noGrad(() => mulv(xv, xv));
  if (y.requiresGrad) throw new Error("noGrad recorded a node");
});

Deno.test("checkpoint: identical gradient, memory of a 20-step chain within 2x of one step", async () => {
  const n = 4096, s = freshSeed();
  const x0 = f32(randArray(n, s, -0.5, 0.5));
  // one segment: a deliberately activation-heavy step (8 intermediates of the input's size)
  const step = (x: Var): Var => {
    let h = x;
    for (let k = 0; k < 8; k++) h = sinv(mulv(h, x));
    return mulv(h, h);
  };
  async function run(steps: number, ckpt: boolean): Promise<{ grad: Float32Array; peak: number }> {
    const x = leaf(gpu.tensor(x0));
    await gpu.sync();
    gpu.pool.resetHighWater();
    const base = gpu.pool.liveBytes;
    scope(() => {
      let h = x;
      for (let k = 0; k < steps; k++) h = ckpt ? checkpoint(step, [h]) : step(h);
      backward(h);
    });
    const peak = gpu.pool.highWater - base;
    const grad = await gpu.read(x.grad!);
    x.zeroGrad();
    x.value.dispose();
    return { grad, peak };
  }
  const plain = await run(20, false);
  const ck = await run(20, true);
  const one = await run(1, true);
  for (let i = 0; i < n; i++) {
    if (
      !Number.isFinite(ck.grad[i]) ||
      Object.is(ck.grad[i], plain.grad[i]) === false && ck.grad[i] !== plain.grad[i]
    ) {
      throw new Error(`checkpointed gradient differs at ${i}: ${ck.grad[i]} vs ${plain.grad[i]}`);
    }
  }
  if (!(ck.peak <= 2 * one.peak)) throw new Error(`20-step peak ${ck.peak} B > 2x 1-step ${one.peak} B`);
  if (!(plain.peak > 4 * ck.peak)) {
    throw new Error(`checkpointing saved too little: ${plain.peak} vs ${ck.peak}`);
  }
  console.log(`peak live bytes: 1 step ${one.peak}, 20 steps checkpointed ${ck.peak}, plain ${plain.peak}`);
});

Deno.test("device errors surface as GpuOpError naming the kernel at the next read", async () => {
  const { GpuOpError } = await import("../src/gpu/errors.ts");
  // a shader that does not compile: the error names the kernel key
  const bad = gpu.kernel(
    "broken_kernel_for_test",
    () => "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
  );
  const t = gpu.zeros([4]);
  gpu.dispatch(bad, [], 1);
  let caught: unknown = null;
  try {
    await gpu.read(t);
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof GpuOpError) || !/broken_kernel_for_test/.test(caught.message)) {
    throw new Error(`expected a GpuOpError naming the kernel, got ${caught}`);
  }
  // the device keeps working afterwards
  const ok = await gpu.read(gpu.tensor([1, 2, 3]));
  if (ok[2] !== 3) throw new Error("device unusable after an error");
});

Deno.test("reads in flight together are serialised", async () => {
  const ts = [1, 2, 3, 4].map((v) => gpu.tensor(new Float32Array(1000).fill(v)));
  const outs = await Promise.all(ts.map((t) => gpu.read(t)));
  outs.forEach((o, i) => {
    if (o[999] !== i + 1) throw new Error(`read ${i} returned ${o[999]}`);
  });
});

Deno.test("fill and zeros work past the maximum storage binding size", async () => {
  const maxBinding = gpu.adapter.limits.maxStorageBufferBindingSize;
  const n = maxBinding / 4 + 1000; // just past one binding
  if (n * 4 > gpu.adapter.limits.maxBufferSize) return; // adapter cannot hold it: nothing to check
  const t = gpu.empty([n]);
  gpu.fill(t, 2.5);
  // read the last values (past the first binding) through a command-ordered copy
  const small = gpu.empty([1000]);
  const { Tensor } = await import("../src/tensor.ts");
  gpu.copy(new Tensor(gpu, t.buffer, [1000], "f32", (n - 1000) * 4, false), small);
  const out = await gpu.read(small);
  if (out.some((v) => v !== 2.5)) throw new Error("fill missed the part past the first binding");
  t.dispose();
  small.dispose();
});
