/**
 * Who knows the purifier's noise: the randomness settings of the paper's evaluation.
 * - "fresh": every call draws a new noise set (the defense as deployed; attacks average over it by EOT).
 * - "dw_fwd": the forward noise is fixed, the reverse noises fresh ("Deterministic White-box").
 * - "dw_rev": the reverse noises are fixed, the forward noise fresh.
 * - "dw_both": everything fixed: the purifier is a deterministic function the attacker knows.
 * The fixed parts are reused in every attack step and in the final evaluation. For DDIM with eta 0 there
 * are no reverse noises, so dw_fwd equals dw_both and dw_rev equals fresh.
 *
 * Every draw is reproducible from one seed: a set is a pure function of the key (seed, stream, counter)
 * (diffusion/noise.ts). Streams separate the purposes (attack EOT draws, evaluation draws, the fixed set,
 * random starts), the row (the attack setting) and the batch; the counter numbers the draws of a stream and
 * is advanced on the GPU, so a loop of draws uploads nothing. Evaluation streams do not depend on the row:
 * the clean and every attacked evaluation of a batch see the same draws (paired comparisons).
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, type Tensor } from "../tensor.ts";
import { advanceCounter, rngKey } from "../ops/random.ts";
import { forwardNoise, type NoiseSet, reverseNoise } from "../diffusion/sampler.ts";
import type { NoiseShape } from "./purifier.ts";

export const NOISE_MODES = ["fresh", "dw_fwd", "dw_rev", "dw_both"] as const;
export type NoiseMode = typeof NOISE_MODES[number];

/** What a stream is for (the top bits of the stream word). */
export const STREAM = { attack: 1, eval: 2, fixed: 3, start: 4 } as const;
export type StreamPurpose = keyof typeof STREAM;

const ROW_BITS = 9, BATCH_BITS = 20;

/** The stream word of (purpose, row, batch): 3 + 9 + 20 bits. */
export function streamId(purpose: StreamPurpose, row: number, batch: number): number {
  if (!(Number.isInteger(row) && row >= 0 && row < 2 ** ROW_BITS)) throw new RangeError(`stream: row ${row}`);
  if (!(Number.isInteger(batch) && batch >= 0 && batch < 2 ** BATCH_BITS)) {
    throw new RangeError(`stream: batch ${batch}`);
  }
  return ((STREAM[purpose] << (ROW_BITS + BATCH_BITS)) | (row << BATCH_BITS) | batch) >>> 0;
}

/** Which parts of a noise set are fixed in a mode. */
export function fixedParts(mode: NoiseMode): { forward: boolean; reverse: boolean } {
  return {
    forward: mode === "dw_fwd" || mode === "dw_both",
    reverse: mode === "dw_rev" || mode === "dw_both",
  };
}

export interface PlanIds {
  seed: number;
  /** The attack setting (row of the report). */
  row: number;
  batch: number;
}

/** Draws the noise sets of one batch for one attack setting. Owns its key and fixed tensors: dispose(). */
export class NoisePlan {
  private readonly fixed: { forward: Tensor | null; reverse: readonly Tensor[] | null };
  private readonly keys: Record<"attack" | "eval", Tensor>;

  constructor(
    readonly gpu: Gpu,
    readonly shape: readonly number[],
    readonly noise: NoiseShape,
    readonly mode: NoiseMode,
    readonly ids: PlanIds,
  ) {
    const { seed, row, batch } = ids;
    const parts = fixedParts(mode);
    const fixedKey = rngKey(gpu, seed, streamId("fixed", row, batch), 0);
    this.fixed = {
      forward: parts.forward ? keep(forwardNoise(gpu, shape, fixedKey)) : null,
      reverse: parts.reverse && noise.reverseStochastic ? this.reverseOf(fixedKey).map((t) => keep(t)) : null,
    };
    fixedKey.dispose();
    this.keys = {
      attack: keep(rngKey(gpu, seed, streamId("attack", row, batch), 0)),
      eval: keep(rngKey(gpu, seed, streamId("eval", 0, batch), 0)),
    };
  }

  /** Whether two draws can differ (EOT over several draws is useful only then). */
  get varies(): boolean {
    return !this.fixed.forward || (this.noise.reverseStochastic && !this.fixed.reverse);
  }

  /**
   * The next noise set for an attack step's EOT sample or for an evaluation. Fresh parts are new tensors
   * of the caller's scope; fixed parts are shared and owned by the plan.
   */
  draw(purpose: "attack" | "eval"): NoiseSet {
    const key = this.keys[purpose];
    const forward = this.fixed.forward ?? forwardNoise(this.gpu, this.shape, key);
    const reverse = this.fixed.reverse ?? (this.noise.reverseStochastic ? this.reverseOf(key) : []);
    advanceCounter(this.gpu, key);
    return { forward, reverse };
  }

  dispose(): void {
    this.fixed.forward?.dispose();
    for (const t of this.fixed.reverse ?? []) t.dispose();
    this.keys.attack.dispose();
    this.keys.eval.dispose();
  }

  private reverseOf(key: Tensor): Tensor[] {
    return Array.from({ length: this.noise.nSteps }, (_, k) => reverseNoise(this.gpu, this.shape, key, k));
  }
}
