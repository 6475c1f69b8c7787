/** Barrel of src/main (the main job: vanilla DBP vs ADDT with a report) for mod.ts. */
export * from "./compare.ts";
export * from "./cost.ts";
export * from "./defaults.ts";
export * from "./finetune.ts";
export * from "./grids.ts";
export * from "./loss_curve.ts";
export * from "./models.ts";
export * from "./pipeline.ts";
