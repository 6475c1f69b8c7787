/**
 * The report's image grids: a few test images, their adversarial examples (the headline attack run
 * against the vanilla purified model), and those examples purified by the vanilla and by the ADDT model
 * with the same noise draw, so the two purified rows differ only by the diffusion weights.
 */
import type { Gpu } from "../gpu/context.ts";
import { scopeAsync, type Tensor } from "../tensor.ts";
import { constant, noGrad } from "../autodiff/var.ts";
import { rngKey } from "../ops/random.ts";
import { correctFlags } from "../attack/losses.ts";
import { attackModel, type Defense } from "../defense/defense.ts";
import { NoisePlan, streamId } from "../defense/noise_plan.ts";
import { attackLabel, type AttackSpec } from "../eval/config.ts";
import { runAttack } from "../eval/protocol.ts";
import { writeGridPng } from "../io/png.ts";
import type { ImageGrid } from "../report/types.ts";

/** A batch number no evaluation uses (the last of the stream id's batch field): draws of their own. */
const GRID_BATCH = 2 ** 20 - 1;

export const GRID_FILES = {
  clean: "clean.png",
  adversarial: "adversarial.png",
  vanilla: "purified-vanilla.png",
  addt: "purified-addt.png",
} as const;

export interface GridInputs {
  gpu: Gpu;
  vanilla: Defense;
  addt: Defense;
  /** Images in [0, 1] (flat NCHW, `count` of them) and their labels. */
  images: Float32Array;
  labels: ArrayLike<number>;
  shape: readonly [number, number, number];
  spec: AttackSpec;
  seed: number;
}

/** Write the four grids into `out`; the captions count how many images each model still classifies right. */
export async function writeImageGrids(g: GridInputs, out: string): Promise<ImageGrid[]> {
  const { gpu, vanilla, addt, shape } = g;
  if (!vanilla.purifier || !addt.purifier) throw new Error("image grids: both models need a purifier");
  const count = g.labels.length;
  const read = await scopeAsync(async () => {
    const x = gpu.tensor(g.images, [count, ...shape]);
    const y = gpu.tensor(Uint32Array.from(g.labels));
    const plan = new NoisePlan(gpu, x.shape, vanilla.purifier!, g.spec.mode, {
      seed: g.seed,
      row: 0,
      batch: GRID_BATCH,
    });
    try {
      const startKey = rngKey(gpu, g.seed, streamId("start", 0, GRID_BATCH), 0);
      // runAttack hands its result out of every scope: disposed here
      const adv = await runAttack(g.spec, attackModel(vanilla, plan), x, y, startKey);
      try {
        return await purifyAndRead(adv);
      } finally {
        adv.dispose();
      }
    } finally {
      plan.dispose();
    }

    async function purifyAndRead(adv: Tensor): Promise<Float32Array[]> {
      const noise = plan.draw("eval");
      const purify = (d: Defense) => noGrad(() => d.purifier!.purify(constant(adv), noise).value);
      const right = (d: Defense, img: Tensor) =>
        noGrad(() => correctFlags(gpu, d.classifier(constant(img)).value, y));
      const pv = purify(vanilla), pa = purify(addt);
      const tensors = [x, adv, pv, pa, right(vanilla, pv), right(addt, pa)];
      const arrays: Float32Array[] = [];
      for (const t of tensors) arrays.push(await gpu.read(t));
      return arrays;
    }
  });
  const [clean, adv, pv, pa, okV, okA] = read;
  const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);
  const full = [count, ...shape] as const;
  const opts = { cols: Math.min(count, 8), scale: shape[1] <= 32 ? 3 : 1 };
  await Deno.mkdir(out, { recursive: true });
  const grids: [keyof typeof GRID_FILES, Float32Array, string, string][] = [
    ["clean", clean, "Clean test images", `labels ${Array.from(g.labels).join(" ")}`],
    [
      "adversarial",
      adv,
      "Adversarial examples",
      `${attackLabel(g.spec)} against the vanilla ${vanilla.name} model`,
    ],
    [
      "vanilla",
      pv,
      `Purified by the vanilla model (${vanilla.name})`,
      `${sum(okV)}/${count} classified right`,
    ],
    [
      "addt",
      pa,
      `Purified by the ADDT model (${addt.name})`,
      `${sum(okA)}/${count} classified right (same noise)`,
    ],
  ];
  const written: ImageGrid[] = [];
  for (const [key, data, title, caption] of grids) {
    await writeGridPng(`${out}/${GRID_FILES[key]}`, data, full, opts);
    written.push({ title, file: GRID_FILES[key], caption });
  }
  return written;
}
