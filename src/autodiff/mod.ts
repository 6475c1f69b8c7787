/** Differentiable ops on `Var`, the tape (`backward`, `noGrad`) and gradient checkpointing. */
export * from "./attention.ts";
export * from "./channels.ts";
export * from "./checkpoint.ts";
export * from "./conv2d.ts";
export * from "./elementwise.ts";
export * from "./groupnorm.ts";
export * from "./matmul.ts";
export * from "./reduce.ts";
export * from "./resample.ts";
export * from "./softmax.ts";
export * from "./var.ts";
