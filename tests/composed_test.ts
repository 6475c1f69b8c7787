/**
 * A composed gradient check through the op families working together: conv -> group norm -> SiLU ->
 * attention -> linear -> cross-entropy. The chain is one architecture walk (src/nn/layers.ts NetOps), run on
 * the GPU with autodiff and in float64 on the CPU (tests/nn_reference.ts); the GPU gradients of the input
 * and of every parameter are compared with central differences of the float64 loss.
 */
import { conv, dense, initParams, type NetOps, norm, VarOps } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/params.ts";
import { trace } from "../src/nn/flops.ts";
import { crossEntropy } from "../src/autodiff/softmax.ts";
import type { Var } from "../src/autodiff/var.ts";
import { type Arr, checkNet, CpuOps, hostParams } from "./nn_reference.ts";
import { freshSeed, randArray, testGpu } from "./util.ts";

const gpu = await testGpu();
const [N, C, H, W, CLASSES] = [3, 1, 5, 6, 4];

/** logits of the chain; attention runs over the 8 channels as tokens of H*W/... features */
function chain<T>(L: NetOps<T>, x: T): T {
  let h = conv(L, "conv", x, 8, 3, { padding: 1 }); // [N, 8, 5, 6]
  h = L.silu(norm(L, "norm", h, 2, 1e-5));
  const tokens = L.reshape(h, [N, 8, H * W]); // 8 tokens of 30 features
  const q = dense(L, "to_q", tokens, 12), k = dense(L, "to_k", tokens, 12), v = dense(L, "to_v", tokens, 12);
  const a = L.attention(q, k, v, 1 / Math.sqrt(12)); // [N, 8, 12]
  return dense(L, "head", L.reshape(a, [N, 8 * 12]), CLASSES); // [N, CLASSES]
}

function crossEntropyRef(logits: Arr, labels: Uint32Array): Arr {
  const [n, c] = logits.shape;
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const row = logits.data.subarray(i * c, (i + 1) * c);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    loss += lse - row[labels[i]];
  }
  return { shape: [1], data: Float64Array.of(loss / n) };
}

Deno.test("composed chain conv -> groupnorm -> silu -> attention -> linear -> cross-entropy: exact gradients", async () => {
  for (let rep = 0; rep < 2; rep++) {
    const seed = freshSeed();
    const decls = trace((L, x) => chain(L, x), [N, C, H, W]).decls;
    const inits = initParams(decls, seed);
    const store = ParamStore.create(gpu, inits);
    const labels = Uint32Array.from({ length: N }, (_, i) => (seed + i) % CLASSES);
    const labelsT = gpu.tensor(labels);
    await checkNet({
      what: "composed chain",
      seed,
      gpu,
      store,
      host: hostParams(inits),
      input: randArray(N * C * H * W, seed + 1),
      inputShape: [N, C, H, W],
      gpuForward: (x: Var) => crossEntropy(chain(new VarOps(store, {}), x), labelsT),
      cpuForward: (ops: CpuOps, x: Arr) => crossEntropyRef(chain(ops, x), labels),
      // a bias shared by every key shifts each row of q k^T by a constant, which softmax ignores: its exact
      // gradient is 0, so a relative comparison would only compare rounding noise
      check: store.names.filter((n) => n !== "to_k.bias"),
      zeroGradAllowed: /^to_k\.bias$/,
      forwardTol: 1e-5,
      gradTol: 1e-4,
    });
    labelsT.dispose();
    store.dispose();
  }
});
