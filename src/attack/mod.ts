/** Barrel of src/attack for mod.ts. */
export * from "./apgd.ts";
export * from "./gradient.ts";
export * from "./losses.ts";
export * from "./model.ts";
export * from "./pgd.ts";
export * from "./projection.ts";
