/**
 * FLOP arithmetic of an attacked evaluation, per image, from the networks' forward FLOPs (nn/flops.ts
 * convention: 2 per multiply-accumulate). A backward pass costs about twice its forward (input and
 * activation gradients; the weights are frozen, so no weight gradients); a checkpointed reverse step is
 * run forward once without keeping activations and once more inside the backward pass. So one gradient
 * of the purified classifier costs (1 + 1 + 2) = 4 UNet forwards per reverse step plus 3 classifier
 * forwards, and one evaluation costs 1 UNet forward per step plus 1 classifier forward.
 */
export interface CostInputs {
  /** FLOPs of one UNet forward on one image. */
  unetFlops: number;
  /** FLOPs of one classifier forward on one image. */
  classifierFlops: number;
  /** UNet calls per purification (nfe + 1). */
  modelCalls: number;
  /** Gradient evaluations of the attack (PGD: steps; APGD: steps + 1, per restart). */
  gradients: number;
  eot: number;
  /** Evaluations of the final image (K) and of the clean image (K). */
  k: number;
  /** Whether reverse steps are checkpointed (recomputed in the backward pass). Default true. */
  checkpoint?: boolean;
}

export interface CostEstimate {
  /** FLOPs of one gradient of the defended classifier. */
  perGradient: number;
  attack: number;
  evaluation: number;
  total: number;
}

export function attackCost(c: CostInputs): CostEstimate {
  const unetPerStep = c.checkpoint === false ? 3 : 4;
  const perGradient = c.modelCalls * unetPerStep * c.unetFlops + 3 * c.classifierFlops;
  const perEvaluation = c.modelCalls * c.unetFlops + c.classifierFlops;
  const attack = c.gradients * c.eot * perGradient;
  const evaluation = 2 * c.k * perEvaluation;
  return { perGradient, attack, evaluation, total: attack + evaluation };
}

/** Seconds per image at a sustained rate in FLOP/s. */
export const secondsAt = (flops: number, flopsPerSecond: number): number => flops / flopsPerSecond;
