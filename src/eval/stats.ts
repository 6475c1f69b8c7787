/**
 * Accuracy with its uncertainty: the Wilson score interval (Wilson 1927), which stays inside [0, 1] and
 * keeps a sensible width at 0% and 100%, where the normal approximation collapses. For a mean of per-sample
 * fractions (the accuracy averaged over K evaluations) the same formula is applied to the mean with the
 * number of samples as n: an approximation that ignores the within-sample spread.
 */

/** The two-sided 95% standard-normal quantile. */
export const Z95 = 1.959963984540054;

export interface AccuracyStat {
  /** Correct samples (a sum of fractions for per-sample means). */
  correct: number;
  n: number;
  accuracy: number;
  /** 95% Wilson interval. */
  ci95: [number, number];
}

/** Wilson score interval for `successes` out of `n` at the normal quantile z. */
export function wilson(successes: number, n: number, z = Z95): [number, number] {
  if (!(n > 0)) return [0, 1];
  if (!(successes >= 0 && successes <= n)) throw new RangeError(`wilson: ${successes} successes of ${n}`);
  const p = successes / n, z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt(p * (1 - p) / n + z2 / (4 * n * n));
  // exact ends where the interval touches them (rounding would leave 1 - 1e-16)
  return [successes === 0 ? 0 : Math.max(0, centre - half), successes === n ? 1 : Math.min(1, centre + half)];
}

export function accuracyStat(correct: number, n: number): AccuracyStat {
  return { correct, n, accuracy: n > 0 ? correct / n : 0, ci95: wilson(correct, n) };
}

/** The three ways of counting a sample evaluated K times by a randomised defense. */
export interface Counts {
  /** The first evaluation with fresh randomness (the paper's protocol). */
  single: AccuracyStat;
  /** The per-sample mean over K evaluations (the paper's fixed AutoAttack counting). */
  mean: AccuracyStat;
  /** Robust only if all K evaluations are right (the worst case). */
  worst: AccuracyStat;
}

/** Per-sample evaluation results: first draw right (0/1), fraction of K right, all K right (0/1). */
export interface SampleFlags {
  single: number[];
  mean: number[];
  worst: number[];
}

export const emptyFlags = (): SampleFlags => ({ single: [], mean: [], worst: [] });

export function appendFlags(into: SampleFlags, more: SampleFlags): void {
  into.single.push(...more.single);
  into.mean.push(...more.mean);
  into.worst.push(...more.worst);
}

export function countsOf(f: SampleFlags): Counts {
  const sum = (a: number[]) => a.reduce((s, v) => s + v, 0);
  const n = f.single.length;
  return {
    single: accuracyStat(sum(f.single), n),
    mean: accuracyStat(sum(f.mean), n),
    worst: accuracyStat(sum(f.worst), n),
  };
}

/** "47.3% [41.2, 53.4]" */
export function formatStat(s: AccuracyStat): string {
  const pct = (v: number) => (100 * v).toFixed(1);
  return `${pct(s.accuracy)}% [${pct(s.ci95[0])}, ${pct(s.ci95[1])}]`;
}
