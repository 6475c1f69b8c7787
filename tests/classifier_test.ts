import { assertClose, f32, freshSeed, randArray, testGpu } from "./util.ts";
import { backward, leaf } from "../src/autodiff/var.ts";
import { scopeAsync } from "../src/tensor.ts";
import { checkNet, hostParams } from "./nn_reference.ts";
import {
  type CnnConfig,
  cnnForward,
  cnnParamDecls,
  cnnTrace,
  cnnWalk,
  MNIST_CNN,
} from "../src/nn/classifier.ts";
import {
  CIFAR10_WRN,
  type WideResNetConfig,
  wrnForward,
  wrnParamDecls,
  wrnTrace,
  wrnWalk,
} from "../src/nn/wideresnet.ts";
import { initParams } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/params.ts";
import { formatReport } from "../src/nn/flops.ts";
import { keyWords, rngKey } from "../src/ops/random.ts";

const gpu = await testGpu();

Deno.test("cnn: default MNIST classifier forward, gradients vs float64 finite differences", async () => {
  const seed = freshSeed();
  const cfg = MNIST_CNN;
  const inits = initParams(cnnParamDecls(cfg), seed);
  const store = ParamStore.create(gpu, inits);
  try {
    await checkNet({
      what: "cnn",
      seed,
      gpu,
      store,
      host: hostParams(inits),
      input: randArray(2 * 28 * 28, seed + 1, 0, 1),
      inputShape: [2, 1, 28, 28],
      gpuForward: (x) => cnnForward(store, cfg, x),
      cpuForward: (L, x) => cnnWalk(L, cfg, x),
      // the float64 reference costs ~80 ms here: few coordinates (the odd-sized test below does more)
      check: ["conv2.weight", "fc1.weight"],
      forwardTol: 1e-4,
      gradTol: 1e-3,
      coords: 2,
      inputCoords: 4,
    });
  } finally {
    store.dispose();
  }
});

Deno.test("cnn: GroupNorm variant on an odd-sized input", async () => {
  const seed = freshSeed();
  const cfg: CnnConfig = {
    image_size: 11,
    in_channels: 2,
    channels: [8, 12, 16],
    hidden: 10,
    classes: 5,
    norm_groups: 4,
  };
  const inits = initParams(cnnParamDecls(cfg), seed);
  const store = ParamStore.create(gpu, inits);
  try {
    await checkNet({
      what: "cnn+gn",
      seed,
      gpu,
      store,
      host: hostParams(inits),
      input: randArray(2 * 2 * 11 * 11, seed + 1, 0, 1),
      inputShape: [2, 2, 11, 11],
      gpuForward: (x) => cnnForward(store, cfg, x),
      cpuForward: (L, x) => cnnWalk(L, cfg, x),
      check: ["conv1.weight", "norm1.weight", "norm3.bias", "fc1.weight"],
      forwardTol: 1e-5,
      gradTol: 1e-3,
    });
  } finally {
    store.dispose();
  }
});

Deno.test("cnn: frozen parameters give the same input gradient and no weight gradients", async () => {
  const seed = freshSeed();
  const cfg: CnnConfig = { ...MNIST_CNN, image_size: 12, channels: [4, 8, 8], hidden: 8, norm_groups: 2 };
  const store = ParamStore.create(gpu, initParams(cnnParamDecls(cfg), seed));
  try {
    await scopeAsync(async () => {
      const x0 = gpu.tensor(f32(randArray(2 * 144, seed, 0, 1)), [2, 1, 12, 12]);
      const dy = gpu.tensor(f32(randArray(20, seed + 1)), [2, 10]);
      const run = async (frozen: boolean) => {
        store.zeroGrad();
        const x = leaf(x0);
        backward(cnnForward(store, cfg, x, { frozen }), dy);
        const out = { gx: await gpu.read(x.grad!), gw: await gpu.read(store.grads) };
        x.zeroGrad();
        return out;
      };
      const plain = await run(false), frozen = await run(true);
      assertClose(frozen.gx, plain.gx, 1e-7, `frozen d/dx seed=${seed}`);
      if (frozen.gw.some((v) => v !== 0)) {
        throw new Error(`frozen forward accumulated weight gradients seed=${seed}`);
      }
      if (plain.gw.every((v) => v === 0)) throw new Error("the plain forward gave no weight gradients");
    });
  } finally {
    store.dispose();
  }
});

Deno.test("wideresnet: tiny WRN-10-1 with dropout, forward and gradients vs float64", async () => {
  const seed = freshSeed();
  const cfg: WideResNetConfig = {
    ...CIFAR10_WRN,
    depth: 10,
    width: 2,
    image_size: 8,
    norm_groups: 4,
    dropout: 0.3,
  };
  const inits = initParams(wrnParamDecls(cfg), seed);
  const store = ParamStore.create(gpu, inits);
  const words = keyWords(seed % 1000003, 3, 7);
  const key = rngKey(gpu, seed % 1000003, 3, 7);
  try {
    await checkNet({
      what: "wrn",
      seed,
      gpu,
      store,
      host: hostParams(inits),
      input: randArray(2 * 3 * 8 * 8, seed + 1),
      inputShape: [2, 3, 8, 8],
      gpuForward: (x) => wrnForward(store, cfg, x, { train: true, rngKey: key }),
      cpuForward: (L, x) => wrnWalk(L, cfg, x),
      cpuOptions: { train: true, keyWords: words },
      check: [
        "conv_in.weight",
        "stages.1.blocks.0.shortcut.weight",
        "stages.2.blocks.0.norm2.bias",
        "fc.weight",
      ],
      forwardTol: 1e-5,
      gradTol: 1e-3,
    });
  } finally {
    key.dispose();
    store.dispose();
  }
});

Deno.test("classifiers: parameter and FLOP report", () => {
  const cnn = cnnTrace(MNIST_CNN), wrn = wrnTrace(CIFAR10_WRN);
  console.log(formatReport("MNIST CNN", cnn));
  console.log(formatReport("WRN-28-10", wrn));
  if (cnn.output.join() !== "1,10" || wrn.output.join() !== "1,10") throw new Error("logits must be [N, 10]");
  // WRN-28-10 has 36.5 M parameters (Zagoruyko & Komodakis, table 1) and ~5.2 G multiply-adds
  if (Math.abs(wrn.params / 36.5e6 - 1) > 0.01) throw new Error(`WRN-28-10 has ${wrn.params} parameters`);
  if (Math.abs(wrn.flops / 10.5e9 - 1) > 0.02) throw new Error(`WRN-28-10 costs ${wrn.flops} FLOPs`);
  if (cnn.flops > 20e6) throw new Error(`the MNIST CNN costs ${cnn.flops} FLOPs per image`);
});
