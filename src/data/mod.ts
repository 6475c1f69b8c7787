/** Barrel of src/data for mod.ts. */
export * from "./batches.ts";
export * from "./cifar10.ts";
export * from "./dataset.ts";
export * from "./errors.ts";
export * from "./fashion_json.ts";
export * from "./fashion_mnist.ts";
export * from "./files.ts";
export * from "./gpu_batch.ts";
export * from "./idx.ts";
export * from "./mnist.ts";
export * from "./npm_package.ts";
export * from "./random.ts";
