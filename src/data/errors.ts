/** Typed errors of the data loaders: each names the file and what is wrong with it, in one line. */

/** A dataset file that is missing, unreadable, or not in the expected format. */
export class DataError extends Error {
  override readonly name = "DataError";
  constructor(readonly file: string, readonly problem: string) {
    super(`${file}: ${problem}`);
  }
}
