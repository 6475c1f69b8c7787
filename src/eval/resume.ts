/**
 * Resuming an evaluation (`addt eval --out DIR`, the main job's evaluations): after every finished batch
 * the per-sample results so far go to a progress.json, atomically; a rerun with the same key skips those
 * batches. This is exact because batch b's random draws are keyed by (seed, purpose, row, b)
 * (src/defense/noise_plan.ts), never by what ran before it.
 *
 * The key is everything that determines the numbers: the validated EvalConfig except `out` and `n` (a
 * larger n continues the same run on the same first images; the batch size stays in, since batches key the
 * noise) and the weight files' size and SHA-256. Progress under another key is discarded. The weights are
 * named by content, not modification time, so progress carried to a fresh clone or a copied folder (where
 * every file is new to the file system) still resumes.
 */
import { dirname } from "node:path";
import { writeFileAtomic } from "../io/safetensors.ts";
import { readKeyedProgress } from "../io/files.ts";
import type { EvalConfig } from "./config.ts";
import type { SampleFlags } from "./stats.ts";

export const EVAL_PROGRESS_FORMAT = "addt-eval-progress/1";

/** One finished batch: what evaluateBatch returned, with its size and wall time. */
export interface BatchRecord {
  /** Images in the batch. */
  count: number;
  clean: SampleFlags;
  rows: { flags: SampleFlags; seconds: number }[];
  undefendedClean: SampleFlags;
  undefendedRobust: SampleFlags[];
  /** Wall time charged to this batch (for the first batch of a piece: since the piece started). */
  wallSeconds: number;
}

export interface EvalProgress {
  format: string;
  key: string;
  /** When the first piece started (ISO time). */
  started: string;
  /** The largest GPU high-water mark of the pieces so far. */
  gpuHighWaterBytes: number;
  /** Finished batches from batch 0, in order. */
  batches: BatchRecord[];
}

/** What identifies a weights file's contents. */
export interface WeightsStamp {
  path: string;
  bytes: number;
  /** Hex SHA-256 of the file's bytes (milliseconds for these networks' few MB). */
  sha256: string | null;
}

const hex = (bytes: ArrayBuffer): string =>
  Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

/** Size and SHA-256 of each file (a missing file stamps as -1 bytes, so it never matches a present one). */
export async function weightsStamps(paths: readonly string[]): Promise<WeightsStamp[]> {
  return await Promise.all(paths.map(async (path) => {
    try {
      const data = await Deno.readFile(path);
      return { path, bytes: data.length, sha256: hex(await crypto.subtle.digest("SHA-256", data)) };
    } catch {
      return { path, bytes: -1, sha256: null };
    }
  }));
}

/** JSON with object keys sorted at every level, so key order (CLI vs --config file) never matters. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The progress key of a validated config (with its real offset) and the weights it evaluates. */
export function evalProgressKey(config: EvalConfig, weights: readonly WeightsStamp[]): string {
  // checkpointing changes the speed, not the gradient (bit-identical): a run may resume with either
  const { out: _out, n: _n, checkpoint: _checkpoint, ...determining } = config;
  return canonicalJson({ config: determining, weights });
}

const isFlags = (f: unknown, count: number): boolean => {
  const s = f as SampleFlags | null;
  return !!s && [s.single, s.mean, s.worst].every((a) => Array.isArray(a) && a.length === count);
};

function isBatchRecord(b: unknown, rows: number): boolean {
  const r = b as BatchRecord | null;
  return !!r && Number.isInteger(r.count) && r.count >= 1 && Number.isFinite(r.wallSeconds) &&
    isFlags(r.clean, r.count) && isFlags(r.undefendedClean, r.count) &&
    Array.isArray(r.rows) && r.rows.length === rows &&
    r.rows.every((row) => isFlags(row?.flags, r.count) && Number.isFinite(row.seconds)) &&
    Array.isArray(r.undefendedRobust) && r.undefendedRobust.every((f) => isFlags(f, r.count));
}

/**
 * The progress at `path` if it was made under `key`; null when there is none, and null with one line
 * said when there is one that cannot be used (another config or weights, or a damaged file).
 */
export async function readEvalProgress(
  path: string,
  key: string,
  rows: number,
  say: (line: string) => void,
): Promise<EvalProgress | null> {
  return await readKeyedProgress<EvalProgress>(
    path,
    { format: EVAL_PROGRESS_FORMAT, key },
    (p) => Array.isArray(p.batches) && p.batches.every((b) => isBatchRecord(b, rows)),
    "eval",
    say,
  );
}

/**
 * The recorded batches this run can take as they are: the leading ones with the same image count here
 * (a shorter run's partial last batch is redone as a full one; a longer run's extra batches are dropped).
 */
export function reusableBatches(
  recorded: readonly BatchRecord[],
  n: number,
  batchSize: number,
): BatchRecord[] {
  const out: BatchRecord[] = [];
  for (const [b, rec] of recorded.entries()) {
    const count = Math.min(batchSize, n - b * batchSize);
    if (count <= 0 || rec.count !== count) break;
    out.push(rec);
  }
  return out;
}

/** Write the progress atomically (its folder is created if needed). */
export async function saveEvalProgress(path: string, progress: EvalProgress): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, JSON.stringify(progress) + "\n");
}
