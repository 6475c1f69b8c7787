/** Barrel of src/nn for mod.ts. */
export * from "./classifier.ts";
export * from "./flops.ts";
export * from "./layers.ts";
export * from "./model_io.ts";
export * from "./params.ts";
export * from "./unet.ts";
export * from "./wideresnet.ts";
