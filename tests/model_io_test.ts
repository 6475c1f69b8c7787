import { f32, freshSeed, randArray, testGpu } from "./util.ts";
import { diffusersUNetParams } from "./nn_reference.ts";
import { CIFAR10_UNET, createUNet, renameDeprecatedAttention, type UNetConfig } from "../src/nn/unet.ts";
import { loadParams, ParamLoadError, saveParams } from "../src/nn/model_io.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "../src/io/safetensors.ts";

const gpu = await testGpu();

/** The CIFAR-10 model's structure (block types, 2 layers per block, attention at 16x16) made narrow,
 * so that a real file load stays fast; the full config is checked at the name/shape level in unet_test. */
const NARROW_CIFAR: UNetConfig = { ...CIFAR10_UNET, block_out_channels: [32, 32, 64, 64] };

/** A file holding diffusers' names and shapes with random values. */
function diffusersTensors(cfg: UNetConfig, seed: number, deprecated = false): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  let k = 0;
  for (const [name, shape] of diffusersUNetParams(cfg, deprecated)) {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, { shape, data: f32(randArray(n, seed + k++)) });
  }
  return out;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "addt_model_io_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sameValues(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length || a.some((v, i) => !Object.is(v, b[i]))) {
    throw new Error(`${what}: values differ`);
  }
}

for (const deprecated of [false, true]) {
  const kind = deprecated ? "deprecated attention names" : "diffusers' names";
  Deno.test(`model_io: a file with ${kind} loads into the UNet, every tensor matched`, async () => {
    const seed = freshSeed();
    await withTempDir(async (dir) => {
      const path = `${dir}/unet.safetensors`;
      const file = diffusersTensors(NARROW_CIFAR, seed, deprecated);
      await writeSafetensors(path, file, { source: "test" });
      const store = createUNet(gpu, NARROW_CIFAR, seed);
      try {
        const meta = await loadParams(store, path, deprecated ? { rename: renameDeprecatedAttention } : {});
        if (meta.source !== "test") throw new Error("metadata not returned");
        const loaded = await store.toHost();
        if (loaded.size !== file.size) throw new Error(`${loaded.size} parameters, file ${file.size}`);
        for (const [name, t] of file) {
          const model = deprecated ? renameDeprecatedAttention(name) : name;
          sameValues(loaded.get(model)!, t.data, `${name} seed=${seed}`);
        }
      } finally {
        store.dispose();
      }
    });
  });
}

Deno.test("model_io: mismatches fail naming every offending key, and load nothing", async () => {
  const seed = freshSeed();
  await withTempDir(async (dir) => {
    const path = `${dir}/bad.safetensors`;
    const file = diffusersTensors(NARROW_CIFAR, seed);
    file.delete("conv_in.bias");
    file.delete("down_blocks.1.attentions.0.to_k.weight");
    file.set("extra.weight", { shape: [2], data: f32([1, 2]) });
    file.set("conv_out.weight", { shape: [3, 32, 1, 1], data: new Float32Array(96) });
    await writeSafetensors(path, file);
    const store = createUNet(gpu, NARROW_CIFAR, seed);
    try {
      const before = await gpu.read(store.values);
      let err: unknown = null;
      try {
        await loadParams(store, path);
      } catch (e) {
        err = e;
      }
      if (!(err instanceof ParamLoadError)) throw new Error(`expected ParamLoadError, got ${err}`);
      for (
        const key of [
          "conv_in.bias",
          "down_blocks.1.attentions.0.to_k.weight",
          "extra.weight",
          "conv_out.weight",
        ]
      ) {
        if (!err.message.includes(key)) throw new Error(`error does not name ${key}: ${err.message}`);
      }
      if (err.missing.join() !== "conv_in.bias,down_blocks.1.attentions.0.to_k.weight") {
        throw new Error(`missing: ${err.missing}`);
      }
      if (err.unexpected.join() !== "extra.weight") throw new Error(`unexpected: ${err.unexpected}`);
      if (err.wrongShape.map((w) => w.name).join() !== "conv_out.weight") throw new Error("wrong shape list");
      sameValues(await gpu.read(store.values), before, "a failed load changed the parameters");
      // a checkpoint under the old names does not load without the rename
      await writeSafetensors(path, diffusersTensors(NARROW_CIFAR, seed, true));
      let threw = false;
      await loadParams(store, path).catch((e) =>
        threw = e instanceof ParamLoadError && e.message.includes("query")
      );
      if (!threw) throw new Error("old names loaded without the rename");
    } finally {
      store.dispose();
    }
  });
});

Deno.test("model_io: save then load round trip, atomic write", async () => {
  const seed = freshSeed();
  await withTempDir(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const a = createUNet(gpu, NARROW_CIFAR, seed), b = createUNet(gpu, NARROW_CIFAR, seed + 1);
    try {
      await saveParams(a, path, { step: "7" });
      const entries = [...Deno.readDirSync(dir)].map((e) => e.name);
      if (entries.join() !== "model.safetensors") throw new Error(`left behind: ${entries}`);
      const file = await readSafetensors(path);
      if (file.metadata.step !== "7") throw new Error("metadata lost");
      if (file.tensors.size !== a.names.length) throw new Error(`${file.tensors.size} tensors written`);
      await loadParams(b, path);
      sameValues(await gpu.read(b.values), await gpu.read(a.values), `round trip seed=${seed}`);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
