import { assertClose, f32, freshSeed, randArray, testGpu } from "./util.ts";
import { PARAM_ALIGN, type ParamInit, ParamStore } from "../src/nn/params.ts";
import { map } from "../src/ops/map.ts";
import { backward, leaf, record, type Var } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";

const gpu = await testGpu();

function specs(seed: number): ParamInit[] {
  const shapes: [string, number[]][] = [["a", [3, 5]], ["b", [7]], ["c", [64]], ["d", [2, 2, 3, 3]], ["e", [
    130,
  ]]];
  return shapes.map(([name, shape], k) => ({
    name,
    shape,
    init: f32(randArray(shape.reduce((x, y) => x * y), seed + k)),
  }));
}

Deno.test("ParamStore: layout is aligned, views hit the flat buffers, padding is zero", async () => {
  const seed = freshSeed();
  const sp = specs(seed);
  const store = ParamStore.create(gpu, sp);
  try {
    let end = 0;
    for (const s of store.slots) {
      if (s.offset % PARAM_ALIGN !== 0 || s.offset < end) {
        throw new Error(`bad offset ${s.offset} for ${s.name}`);
      }
      end = s.offset + s.size;
    }
    if (store.total % PARAM_ALIGN !== 0 || store.total < end) throw new Error(`bad total ${store.total}`);
    const flat = await gpu.read(store.values);
    const used = new Uint8Array(store.total);
    for (const p of sp) {
      const s = store.slot(p.name);
      used.fill(1, s.offset, s.offset + s.size);
      assertClose(
        flat.slice(s.offset, s.offset + s.size),
        p.init,
        1e-7,
        `flat values of ${p.name} seed=${seed}`,
      );
      const v = store.get(p.name);
      if (v !== store.get(p.name)) throw new Error("get must return the same Var");
      if (v.value.buffer !== store.values.buffer || v.value.offset !== s.offset * 4) {
        throw new Error("value view");
      }
      if (v.grad!.buffer !== store.grads.buffer || v.grad!.offset !== s.offset * 4) {
        throw new Error("grad view");
      }
      if (v.shape.join() !== p.shape.join() || !v.requiresGrad || !v.fixedGrad) throw new Error("leaf Var");
      assertClose(await store.read(p.name), p.init, 1e-7, `read ${p.name}`);
    }
    flat.forEach((x, i) => {
      if (!used[i] && x !== 0) throw new Error(`padding value ${x} at ${i}`);
    });
    if ((await gpu.read(store.grads)).some((x) => x !== 0)) throw new Error("gradients must start at zero");
  } finally {
    store.dispose();
  }
});

Deno.test("ParamStore: load, toHost/fromHost, clone and copyFrom round-trip", async () => {
  const seed = freshSeed();
  const sp = specs(seed);
  const store = ParamStore.create(gpu, sp);
  const newB = f32(randArray(7, seed + 100));
  store.load("b", newB);
  const host = await store.toHost();
  assertClose(host.get("b")!, newB, 1e-7, "loaded b");
  assertClose(host.get("a")!, sp[0].init, 1e-7, "a untouched by load of b");
  const again = ParamStore.fromHost(gpu, store.slots, host);
  const copy = store.clone();
  const flatA = await gpu.read(store.values);
  assertClose(await gpu.read(again.values), flatA, 1e-7, `fromHost seed=${seed}`);
  assertClose(await gpu.read(copy.values), flatA, 1e-7, "clone");
  store.load("e", f32(randArray(130, seed + 7)));
  copy.copyFrom(store);
  assertClose(await gpu.read(copy.values), await gpu.read(store.values), 1e-7, "copyFrom");
  const other = ParamStore.create(gpu, sp.slice(1));
  let threw = false;
  try {
    copy.copyFrom(other);
  } catch {
    threw = true;
  }
  if (!threw) throw new Error("copyFrom across layouts must throw");
  for (const s of [store, again, copy, other]) s.dispose();
});

Deno.test("ParamStore: backward accumulates into the flat gradient buffer until zeroGrad", async () => {
  const seed = freshSeed();
  const store = ParamStore.create(gpu, specs(seed));
  const w = store.get("d");
  const gradView = w.grad;
  const xs = randArray(36, seed + 50);
  const ws = await store.read("d");
  // loss = sum(sin(w) * x): d/dw = cos(w) * x
  const sinMul = (v: Var, x: Var): Var =>
    record("sinmul", map(gpu, "sinmul", "sin(x0) * x1", [v.value, x.value]), [v, x], (g) => [
      map(gpu, "dsinmul", "x0 * cos(x1) * x2", [g, v.value, x.value]),
      null,
    ]);
  const x = leaf(gpu.tensor(f32(xs), [2, 2, 3, 3]));
  scope(() => backward(sinMul(w, x)));
  scope(() => backward(sinMul(w, x)));
  if (w.grad !== gradView) throw new Error("the gradient view was replaced");
  const ref = Array.from(ws, (v, i) => 2 * Math.cos(v) * xs[i]);
  const flat = await gpu.read(store.grads);
  const s = store.slot("d");
  assertClose(flat.slice(s.offset, s.offset + s.size), ref, 1e-6, `accumulated grad seed=${seed}`);
  flat.forEach((g, i) => {
    if ((i < s.offset || i >= s.offset + s.size) && g !== 0) throw new Error(`gradient leaked to ${i}`);
  });
  store.zeroGrad();
  if ((await store.readGrad("d")).some((g) => g !== 0)) throw new Error("zeroGrad left a gradient");
  x.zeroGrad();
  store.dispose();
});
