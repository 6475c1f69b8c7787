/**
 * Model parameters to and from safetensors files, matched by name. Loading is strict: every tensor in the
 * file must match a parameter by name and shape, and every parameter must be filled; otherwise nothing is
 * loaded and a `ParamLoadError` lists the missing, unexpected and wrongly shaped keys. Older checkpoints
 * with other names load through a `rename` function (e.g. unet.ts: renameDeprecatedAttention).
 */
import {
  readSafetensors,
  type SafeTensor,
  type SafetensorsFile,
  writeSafetensors,
} from "../io/safetensors.ts";
import type { ParamStore } from "./params.ts";

export class ParamLoadError extends Error {
  override readonly name = "ParamLoadError";
  constructor(
    readonly source: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly wrongShape: { name: string; file: number[]; model: number[] }[],
  ) {
    const parts: string[] = [];
    const list = (xs: string[]) =>
      xs.slice(0, 20).join(", ") + (xs.length > 20 ? `, ... (${xs.length})` : "");
    if (missing.length) parts.push(`missing from the file: ${list(missing)}`);
    if (unexpected.length) parts.push(`not in the model: ${list(unexpected)}`);
    if (wrongShape.length) {
      parts.push(`wrong shape: ${list(wrongShape.map((w) => `${w.name} [${w.file}] (model [${w.model}])`))}`);
    }
    super(`${source}: parameters do not match the model; ${parts.join("; ")}`);
  }
}

export interface LoadOptions {
  /** Map a file's tensor name to the model's (identity by default). */
  rename?: (name: string) => string;
}

/** Match tensors to the store's parameters by (renamed) name and shape; throws ParamLoadError. */
export function matchParams(
  store: ParamStore,
  tensors: ReadonlyMap<string, SafeTensor>,
  source: string,
  opts: LoadOptions = {},
): Map<string, Float32Array> {
  const rename = opts.rename ?? ((n: string) => n);
  const byName = new Map<string, Float32Array>();
  const unexpected: string[] = [], wrongShape: ParamLoadError["wrongShape"] = [];
  for (const [fileName, t] of tensors) {
    const name = rename(fileName);
    if (!store.has(name) || byName.has(name)) {
      unexpected.push(fileName === name ? name : `${fileName} (as ${name})`);
      continue;
    }
    const want = store.slot(name).shape;
    if (t.shape.join() !== want.join()) {
      wrongShape.push({ name: fileName, file: [...t.shape], model: [...want] });
    } else byName.set(name, t.data);
  }
  const missing = store.names.filter((n) => !byName.has(n) && !wrongShape.some((w) => rename(w.name) === n));
  if (missing.length || unexpected.length || wrongShape.length) {
    throw new ParamLoadError(source, missing, unexpected, wrongShape);
  }
  return byName;
}

/** Load every parameter of `store` from parsed tensors (one upload). */
export function loadParamsFrom(
  store: ParamStore,
  file: SafetensorsFile,
  source = "tensors",
  opts: LoadOptions = {},
): void {
  const values = matchParams(store, file.tensors, source, opts);
  store.gpu.upload(store.values, store.join(values));
}

/** Load a safetensors file into `store` by name; returns the file's metadata. */
export async function loadParams(
  store: ParamStore,
  path: string,
  opts: LoadOptions = {},
): Promise<Record<string, string>> {
  const file = await readSafetensors(path);
  loadParamsFrom(store, file, path, opts);
  return file.metadata;
}

/** Write every parameter (float32, by name) with string metadata, atomically. */
export async function saveParams(
  store: ParamStore,
  path: string,
  metadata: Record<string, string> = {},
): Promise<void> {
  const host = await store.toHost();
  const entries: [string, SafeTensor][] = store.slots.map((s) => [s.name, {
    shape: [...s.shape],
    data: host.get(s.name)!,
  }]);
  await writeSafetensors(path, entries, metadata);
}
