/**
 * Typed failures of a training run. Each carries one line that tells the user what happened and what is
 * left on disk; the CLI prints exactly that line (src/cli/train.ts).
 */

/** Bad settings or files found while preparing a run (exit code "usage"). */
export class TrainSetupError extends Error {
  override readonly name = "TrainSetupError";
}

/** The loss (or the weights about to be saved) stopped being finite. The last good checkpoint is kept. */
export class TrainingDivergedError extends Error {
  override readonly name = "TrainingDivergedError";
  constructor(
    /** The step at which the check failed (the non-finite value arose in (sinceStep, step]). */
    readonly step: number,
    readonly sinceStep: number,
    readonly what: string,
    /** The step of the last complete checkpoint, or null when none was written. */
    readonly lastGoodStep: number | null,
    readonly outDir: string,
  ) {
    const where = step - sinceStep > 1 ? `steps ${sinceStep + 1}..${step}` : `step ${step}`;
    const kept = lastGoodStep === null
      ? "no checkpoint was written"
      : `the last good checkpoint (step ${lastGoodStep}) is kept in ${outDir}`;
    super(`training diverged: ${what} is not finite at ${where}; stopped, ${kept}`);
  }
}
