/**
 * ADDT fine-tuning (Adversarial Denoising Diffusion Training): CGPO with the rank-based Gaussian mapping
 * (RBGM), its ablations (clean fine-tuning, MSE-guided CGPO, ADDT_linf), the training step and the
 * `addt finetune` pipeline.
 */
export * from "./cgpo.ts";
export * from "./draws.ts";
export * from "./finetune.ts";
export * from "./lambda.ts";
export * from "./linf.ts";
export * from "./objective.ts";
export * from "./pipeline.ts";
export * from "./rbgm.ts";
export * from "./settings.ts";
