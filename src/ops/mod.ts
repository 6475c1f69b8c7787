/** Raw GPU ops (no autodiff): forward and backward kernels of every family. */
export * from "./attention.ts";
export * from "./channels.ts";
export * from "./conv2d.ts";
export * from "./elementwise.ts";
export * from "./groupnorm.ts";
export * from "./map.ts";
export * from "./matmul.ts";
export * from "./optim.ts";
export * from "./random.ts";
export * from "./reduce.ts";
export * from "./resample.ts";
export * from "./softmax.ts";
export * from "./sort.ts";
