/**
 * Small helpers every command pipeline needs (train, finetune, eval, eval-clean, the main job): one copy
 * here instead of one per pipeline, so they cannot drift apart.
 */
import * as TE from "fp-ts/TaskEither.js";

/** An async step as a TaskEither: what it throws becomes the Left (a non-Error wrapped in an Error). */
export const attempt = <A>(f: () => Promise<A>): TE.TaskEither<Error, A> =>
  TE.tryCatch(f, (e) => (e instanceof Error ? e : new Error(String(e))));

/** What is at `path`, or null when it cannot be stat'ed (absent, or not reachable). */
export async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch {
    return null;
  }
}

/** Whether anything (file or folder) is at `path`. */
export async function exists(path: string): Promise<boolean> {
  return (await statOrNull(path)) !== null;
}
