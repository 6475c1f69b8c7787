/** Barrel of src/defense for mod.ts. */
export * from "./defense.ts";
export * from "./networks.ts";
export * from "./noise_plan.ts";
export * from "./purifier.ts";
