/** Barrel of src/eval for mod.ts. */
export * from "./config.ts";
export * from "./cost.ts";
export * from "./pipeline.ts";
export * from "./protocol.ts";
export * from "./report.ts";
export * from "./run.ts";
export * from "./stats.ts";
