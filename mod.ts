/**
 * addt: diffusion-based adversarial purification (DBP) and Adversarial Denoising Diffusion Training (ADDT)
 * on WebGPU, for Deno. Every numeric op is a WGSL compute shader; autodiff is exact reverse mode with
 * gradient checkpointing, so attacks can backpropagate through every reverse-diffusion step.
 *
 * Namespaces: `ops` (raw GPU kernels, forward and backward), `ad` (differentiable ops on `Var`, `backward`,
 * `noGrad`, `checkpoint`), `nn` (parameter store, UNet, classifiers, safetensors loading by name), `data`
 * (MNIST, Fashion-MNIST, CIFAR-10, seeded batches), `diffusion` (schedule, samplers, noise sets),
 * `defense`, `attack`, `evaluation`, `io` (safetensors).
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
