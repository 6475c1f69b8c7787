/** Reading dataset files: a missing file or an undecodable gzip stream becomes a DataError naming it. */
import { DataError } from "./errors.ts";

/** True when the bytes start with the gzip magic (1f 8b). */
export const isGzip = (b: Uint8Array): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/** Gunzip in memory with the web-standard DecompressionStream. */
export async function gunzip(bytes: Uint8Array, file: string): Promise<Uint8Array> {
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
      new DecompressionStream("gzip"),
    );
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new DataError(file, `corrupt gzip data (${e instanceof Error ? e.message : e})`);
  }
}

/** A file's bytes, gunzipped if they are gzip (so both `x-idx3-ubyte` and `x-idx3-ubyte.gz` load). */
export async function readDataFile(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(path, "file not found");
    throw new DataError(path, `cannot read (${e instanceof Error ? e.message : e})`);
  }
  return isGzip(bytes) ? await gunzip(bytes, path) : bytes;
}

/** The first of `names` that exists in `dir` (joined with "/"), or null. */
export async function firstExisting(dir: string, names: readonly string[]): Promise<string | null> {
  for (const name of names) {
    const path = `${dir}/${name}`;
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return null;
}
