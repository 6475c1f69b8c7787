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

/**
 * A progress file (JSON with `format` and `key` fields) saved by an earlier run of the same command: null
 * when there is none; null, with one line said, when it was made under another format or key (another
 * configuration or other weights), fails `valid`, or is not JSON. `who` starts the line ("eval").
 */
export async function readKeyedProgress<T extends { format: string; key: string }>(
  path: string,
  expected: { format: string; key: string },
  valid: (p: T) => boolean,
  who: string,
  say: (line: string) => void,
): Promise<T | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return null;
  }
  try {
    const p = JSON.parse(text) as T;
    if (p?.format !== expected.format || p.key !== expected.key) {
      say(`${who}: ${path} is from another configuration or other weights; starting over`);
      return null;
    }
    if (!valid(p)) {
      say(`${who}: ${path} is damaged; starting over`);
      return null;
    }
    return p;
  } catch {
    say(`${who}: ${path} is not valid JSON; starting over`);
    return null;
  }
}
