import { assertClose, f32, finiteDiff, freshSeed, randArray, rng, testGpu } from "./util.ts";
import {
  type Arr,
  checkNet,
  CpuOps,
  diffusersUNetParams,
  hostParams,
  timestepEmbeddingRef,
} from "./nn_reference.ts";
import {
  CIFAR10_UNET,
  MNIST_UNET,
  renameDeprecatedAttention,
  timestepEmbedding,
  TINY_UNET,
  type UNetConfig,
  unetForward,
  unetParamDecls,
  unetTrace,
  unetWalk,
} from "../src/nn/unet.ts";
import { dropout, initParams, padBottomRight } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/params.ts";
import { formatReport } from "../src/nn/flops.ts";
import { keyWords, rngKey } from "../src/ops/random.ts";
import { backward, leaf, noGrad } from "../src/autodiff/var.ts";
import { checkpoint } from "../src/autodiff/checkpoint.ts";
import { scopeAsync } from "../src/tensor.ts";

const gpu = await testGpu();

Deno.test("unet: timestep embedding matches diffusers' formula in float64", async () => {
  for (
    const [n, dim, flip, shift] of [[5, 8, false, 1], [37, 128, false, 1], [3, 30, true, 0], [
      1,
      2,
      false,
      0,
    ]] as const
  ) {
    const seed = freshSeed();
    const r = rng(seed);
    // integer timesteps up to 999 (DDPM) and a few fractional ones
    const t = Float64Array.from(
      { length: n },
      (_, i) => i % 4 === 3 ? Math.fround(r() * 1000) : Math.floor(r() * 1000),
    );
    const out = await scopeAsync(() =>
      gpu.read(timestepEmbedding(gpu, gpu.tensor(f32(t)), dim, flip, shift))
    );
    assertClose(out, timestepEmbeddingRef(t, dim, flip, shift), 1e-5, `temb n=${n} dim=${dim} seed=${seed}`);
  }
});

Deno.test("unet: the CIFAR-10 config declares exactly diffusers' names and shapes (google/ddpm-cifar10-32)", () => {
  const mine = new Map(unetParamDecls(CIFAR10_UNET).map((d) => [d.name, d.shape.join()]));
  const ref = diffusersUNetParams(CIFAR10_UNET);
  const missing = [...ref.keys()].filter((k) => !mine.has(k));
  const extra = [...mine.keys()].filter((k) => !ref.has(k));
  const shapes = [...ref].filter(([k, s]) => mine.has(k) && mine.get(k) !== s.join()).map(([k]) => k);
  if (missing.length || extra.length || shapes.length) {
    throw new Error(`missing ${missing}; extra ${extra}; wrong shapes ${shapes}`);
  }
  const total = [...ref.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
  if (unetTrace(CIFAR10_UNET).params !== 35_746_307 || total !== 35_746_307) {
    throw new Error(`parameter count ${total}, the hub model has 35,746,307`);
  }
  // the deprecated names of older hub files map onto these
  const old = [...diffusersUNetParams(CIFAR10_UNET, true).keys()].map(renameDeprecatedAttention);
  if (old.filter((k) => !mine.has(k)).length || old.length !== mine.size) throw new Error("deprecated names");
});

Deno.test("unet: FLOP and parameter report; the MNIST default is under 100 MFLOP per image", () => {
  const mnist = unetTrace(MNIST_UNET);
  for (
    const [name, cfg] of [["CIFAR-10 UNet", CIFAR10_UNET], ["MNIST UNet", MNIST_UNET], [
      "tiny UNet",
      TINY_UNET,
    ]]
  ) {
    console.log(formatReport(name as string, unetTrace(cfg as UNetConfig)));
  }
  if (!(mnist.flops > 30e6 && mnist.flops <= 100e6)) throw new Error(`MNIST UNet: ${mnist.flops} FLOPs`);
  if (mnist.output.join() !== "1,1,28,28") throw new Error(`MNIST UNet output [${mnist.output}]`);
  // DDPM's CIFAR-10 model: ~6 G multiply-adds per image
  const cifar = unetTrace(CIFAR10_UNET).flops;
  if (!(cifar > 11e9 && cifar < 13e9)) throw new Error(`CIFAR-10 UNet: ${cifar} FLOPs`);
});

/** A tiny UNet in training mode (dropout on) against the float64 reference with the same masks. */
async function checkTiny(cfg: UNetConfig, check: string[], inputCoords: number, coords: number) {
  const seed = freshSeed();
  const inits = initParams(unetParamDecls(cfg), seed);
  const store = ParamStore.create(gpu, inits);
  const s = cfg.sample_size, n = 2;
  const t = [Math.floor(rng(seed)() * 1000), 999];
  const words = keyWords(seed % 999983, 1, 2);
  const key = rngKey(gpu, seed % 999983, 1, 2);
  const tt = gpu.tensor(f32(t));
  try {
    await checkNet({
      what: `unet ${cfg.block_out_channels}`,
      seed,
      gpu,
      store,
      host: hostParams(inits),
      input: randArray(n * cfg.in_channels * s * s, seed + 1),
      inputShape: [n, cfg.in_channels, s, s],
      gpuForward: (x) => unetForward(store, cfg, x, tt, { train: true, rngKey: key }),
      cpuForward: (L, x) => {
        const c0 = cfg.block_out_channels[0];
        const tSin = {
          shape: [n, c0],
          data: timestepEmbeddingRef(t, c0, cfg.flip_sin_to_cos, cfg.freq_shift),
        };
        return unetWalk(L, cfg, x, tSin);
      },
      cpuOptions: { train: true, keyWords: words },
      check,
      forwardTol: 1e-5,
      gradTol: 1e-3,
      coords,
      inputCoords,
      // softmax is invariant to a key bias (q . b is the same for every key): its gradient is exactly 0
      zeroGradAllowed: /\.to_k\.bias$/,
    });
  } finally {
    tt.dispose();
    key.dispose();
    store.dispose();
  }
}

Deno.test("unet: tiny model forward and gradients (input, parameters) vs float64, dropout on", async () => {
  await checkTiny(
    TINY_UNET,
    [
      "conv_in.weight",
      "time_embedding.linear_1.weight",
      "down_blocks.0.resnets.0.time_emb_proj.weight",
      "down_blocks.0.downsamplers.0.conv.weight",
      "down_blocks.1.resnets.0.conv_shortcut.weight",
      "down_blocks.1.attentions.0.to_q.weight",
      "mid_block.attentions.0.to_v.bias",
      "mid_block.attentions.0.to_out.0.weight",
      "up_blocks.0.attentions.1.group_norm.weight",
      "up_blocks.0.upsamplers.0.conv.weight",
      "up_blocks.1.resnets.1.norm2.bias",
      "conv_norm_out.weight",
      "conv_out.bias",
    ],
    8,
    3,
  );
});

Deno.test("unet: variant config (3 levels, 2 layers, flip_sin_to_cos, downsample padding 1)", async () => {
  const cfg: UNetConfig = {
    ...TINY_UNET,
    sample_size: 8,
    in_channels: 1,
    out_channels: 3,
    block_out_channels: [4, 8, 8],
    layers_per_block: 2,
    down_block_types: ["AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    up_block_types: ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D"],
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    norm_num_groups: 2,
  };
  await checkTiny(
    cfg,
    ["down_blocks.0.attentions.1.to_k.weight", "up_blocks.2.resnets.2.conv1.weight"],
    4,
    3,
  );
});

Deno.test("unet: dropout masks are keyed (same key, same output) and checkpointing reproduces gradients", async () => {
  const seed = freshSeed();
  const cfg = TINY_UNET, s = cfg.sample_size;
  const store = ParamStore.create(gpu, initParams(unetParamDecls(cfg), seed));
  const key = rngKey(gpu, seed % 999983), other = rngKey(gpu, seed % 999983, 0, 1);
  const x0 = gpu.tensor(f32(randArray(2 * cfg.in_channels * s * s, seed)), [2, cfg.in_channels, s, s]);
  const t = gpu.tensor(f32([3, 500]));
  try {
    await scopeAsync(async () => {
      const run = (k = key, train = true) =>
        noGrad(() => unetForward(store, cfg, leaf(x0), t, { train, rngKey: k }));
      const [a, b, c, d] = await Promise.all(
        [run(), run(), run(other), run(key, false)].map((v) => gpu.read(v.value)),
      );
      if (a.some((v, i) => v !== b[i])) throw new Error(`same key, different outputs seed=${seed}`);
      if (!(a.some((v, i) => v !== c[i]) && a.some((v, i) => v !== d[i]))) {
        throw new Error(`dropout had no effect seed=${seed}`);
      }
      // gradient of sum(out) through a checkpointed forward equals the plain one, bit for bit
      const grads = async (ckpt: boolean) => {
        store.zeroGrad();
        const x = leaf(x0);
        const fwd = (xv: typeof x) => unetForward(store, cfg, xv, t, { train: true, rngKey: key });
        backward(ckpt ? checkpoint(fwd, [x]) : fwd(x));
        const out = [await gpu.read(x.grad!), await gpu.read(store.grads)];
        x.zeroGrad();
        return out;
      };
      const [gx, gp] = await grads(false), [cx, cp] = await grads(true);
      if (gx.some((v, i) => v !== cx[i]) || gp.some((v, i) => v !== cp[i])) {
        throw new Error(`checkpointed gradients differ seed=${seed}`);
      }
    });
  } finally {
    for (const tensor of [key, other, x0, t]) tensor.dispose();
    store.dispose();
  }
});

Deno.test("unet: input shape and timestep count are checked", () => {
  const store = ParamStore.create(gpu, initParams(unetParamDecls(TINY_UNET), 1));
  try {
    const bad = (f: () => unknown, what: string) => {
      let threw = false;
      try {
        f();
      } catch {
        threw = true;
      }
      if (!threw) throw new Error(`${what} accepted`);
    };
    const x = leaf(gpu.zeros([2, TINY_UNET.in_channels, 6, 6]));
    bad(() => unetForward(store, TINY_UNET, x, gpu.zeros([3])), "3 timesteps for 2 images");
    bad(() => unetForward(store, TINY_UNET, leaf(gpu.zeros([2, 5, 6, 6])), gpu.zeros([2])), "5 channels");
    bad(() => unetForward(store, TINY_UNET, x, gpu.zeros([2]), { train: true }), "training without a key");
    bad(() => unetTrace({ ...TINY_UNET, norm_num_groups: 5 }), "groups that do not divide the channels");
  } finally {
    store.dispose();
  }
});

Deno.test("layers: padBottomRight and dropout vs float64, with their gradients", async () => {
  const ops = new CpuOps(new Map());
  for (const shape of [[2, 3, 5, 7], [1, 2, 4, 4], [1, 1, 1, 1]]) {
    const seed = freshSeed();
    const xs = randArray(shape.reduce((a, b) => a * b), seed);
    const cases = [
      ["pad", padBottomRight, (x: Arr) => ops.padBottomRight(x)],
    ] as const;
    for (const [name, gpuOp, ref] of cases) {
      await scopeAsync(async () => {
        const x = leaf(gpu.tensor(f32(xs), shape));
        const y = gpuOp(x);
        const want = ref({ shape, data: xs });
        if (y.shape.join() !== want.shape.join()) throw new Error(`${name}: shape [${y.shape}]`);
        assertClose(await gpu.read(y.value), want.data, 1e-7, `${name} [${shape}] seed=${seed}`);
        const dy = randArray(want.data.length, seed + 1);
        backward(y, gpu.tensor(f32(dy), y.shape));
        const fd = finiteDiff((v) => ref({ shape, data: v }).data, Float64Array.from(xs), dy, 1e-3);
        assertClose(await gpu.read(x.grad!), fd, 1e-6, `${name} backward [${shape}] seed=${seed}`);
        x.zeroGrad();
      });
    }
    // dropout: the mask is the CPU Philox draw for (key, site); the gradient is dy times the same mask
    await scopeAsync(async () => {
      const words = keyWords(seed % 1000, 4, 5), key = gpu.tensor(words, [4]);
      const x = leaf(gpu.tensor(f32(xs), shape));
      const y = dropout(x, 0.25, key, 9);
      const want = new CpuOps(new Map(), { train: true, keyWords: words, siteBase: 9 }).dropout({
        shape,
        data: xs,
      }, 0.25);
      assertClose(await gpu.read(y.value), want.data, 1e-7, `dropout [${shape}] seed=${seed}`);
      const dy = randArray(xs.length, seed + 2);
      backward(y, gpu.tensor(f32(dy), shape));
      const ref = want.data.map((v, i) => (v === 0 && xs[i] !== 0 ? 0 : dy[i] * (1 / 0.75)));
      assertClose(await gpu.read(x.grad!), ref, 1e-6, `dropout backward [${shape}] seed=${seed}`);
      x.zeroGrad();
    });
  }
});
