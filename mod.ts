/**
 * addt: diffusion-based adversarial purification (DBP) and Adversarial Denoising Diffusion Training (ADDT)
 * on WebGPU, for Deno. Every numeric op is a WGSL compute shader; autodiff is exact reverse mode with
 * gradient checkpointing, so attacks can backpropagate through every reverse-diffusion step.
 *
 * Namespaces: `ops` (raw GPU kernels, forward and backward), `ad` (differentiable ops on `Var`, `backward`,
 * `noGrad`, `checkpoint`), `nn` (parameter store, UNet, classifiers, safetensors loading by name), `data`
 * (MNIST, Fashion-MNIST, CIFAR-10, seeded batches), `diffusion` (schedule, samplers, noise sets),
 * `defense`, `attack`, `evaluation`, `io` (safetensors), `addt` (ADDT fine-tuning: CGPO + RBGM and its
 * ablations), `report` (the main job's report: JSON, Markdown, HTML with SVG plots), `mainJob` (vanilla DBP vs
 * ADDT end to end, the `deno task addt` default) with `runMainJob` and `mainDefaults` at the top level.
 *
 * @example Gradient of a function on the GPU
 * ```ts
 * import { ad, getGpu, scope } from "./mod.ts";
 *
 * const gpu = await getGpu();
 * const x = ad.leaf(gpu.tensor([1, 2, 3]));
 * scope(() => ad.backward(ad.sum(ad.square(x)))); // d/dx sum(x^2) = 2x
 * console.log(await gpu.read(x.grad!)); // Float32Array [2, 4, 6]
 * ```
 *
 * @example A seeded draw that can be reproduced exactly
 * ```ts
 * import { getGpu, ops } from "./mod.ts";
 *
 * const gpu = await getGpu();
 * const key = ops.rngKey(gpu, 42, 0, 0); // (seed, stream, counter)
 * const z = ops.normal(gpu, [2, 1, 28, 28], key);
 * console.log((await gpu.read(z)).length); // 1568
 * ```
 *
 * @example Vanilla DBP vs ADDT from a script (what `deno task addt --n 32` runs)
 * ```ts
 * import { mainDefaults, runMainJob } from "./mod.ts";
 *
 * // defined, not called here: the job takes minutes on a software adapter
 * export async function compare(): Promise<string> {
 *   const config = mainDefaults({ n: 32, defenses: ["dp_ddpm", "dp_ddim"], out: "out/addt-32" });
 *   const result = await runMainJob(config)(); // an fp-ts TaskEither: run it, then look at the Either
 *   if (result._tag === "Left") throw result.left;
 *   return result.right.table; // the Markdown table; report.html and the PNG grids are in config.out
 * }
 * ```
 *
 * @example A short ADDT fine-tune of a DDPM run folder, guided by a classifier run folder
 * ```ts
 * import { addt } from "./mod.ts";
 *
 * export async function finetune(steps: number): Promise<number> {
 *   const settings = addt.finetuneDefaults("out/addt-run", {
 *     ddpm: "weights/mnist-ddpm",
 *     classifier: "weights/mnist-cnn",
 *     steps,
 *   });
 *   const r = await addt.runFinetune(settings)();
 *   if (r._tag === "Left") throw r.left;
 *   return r.right.finalStep; // out/addt-run is a DDPM run folder: `addt eval --ddpm out/addt-run` loads it
 * }
 * ```
 * @module
 */
export { type AdapterFacts, getGpu, Gpu, gridFor, type Kernel } from "./src/gpu/context.ts";
export { GpuOpError, NoAdapterError, ShapeError } from "./src/gpu/errors.ts";
export { wgsl } from "./src/gpu/template.ts";
export { keep, scope, scopeAsync, Tensor } from "./src/tensor.ts";
export * as ops from "./src/ops/mod.ts";
export * as ad from "./src/autodiff/mod.ts";
export * as nn from "./src/nn/mod.ts";
export * as data from "./src/data/mod.ts";
export * as diffusion from "./src/diffusion/sampler.ts";
export * as defense from "./src/defense/mod.ts";
export * as attack from "./src/attack/mod.ts";
export * as evaluation from "./src/eval/mod.ts";
export * as io from "./src/io/safetensors.ts";
export * as addt from "./src/addt/mod.ts";
export * as report from "./src/report/mod.ts";
export * as mainJob from "./src/main/mod.ts";
export { FULL_PROTOCOL, type MainConfig, mainDefaults } from "./src/main/defaults.ts";
export { type MainHooks, type MainResult, runMainJob } from "./src/main/pipeline.ts";
