/**
 * The dataset value: 8-bit images in NCHW order with their labels, plus the one place where pixels
 * become floats. Classifiers take [0, 1] (x / 255); diffusion models take [-1, 1] (2 (x / 255) - 1).
 */
import { DataError } from "./errors.ts";

export interface Dataset {
  /** e.g. "mnist/train" */
  readonly name: string;
  /** n * c * h * w bytes, NCHW, 0..255. */
  readonly images: Uint8Array;
  /** n labels, each < classes.length. */
  readonly labels: Uint8Array;
  readonly n: number;
  readonly c: number;
  readonly h: number;
  readonly w: number;
  /** Class names, indexed by label. */
  readonly classes: readonly string[];
}

/** Which part of a dataset: its training or its held-out test images. */
export type Split = "train" | "test";

/** "unit": [0, 1] for classifiers; "symmetric": [-1, 1] for diffusion models. */
export type PixelRange = "unit" | "symmetric";

// Lookup tables: every conversion goes through these, so both ranges agree bit for bit everywhere.
const UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);
const SYMMETRIC = Float32Array.from({ length: 256 }, (_, v) => 2 * (v / 255) - 1);

/** The float value of each 8-bit pixel level in a range. */
export function pixelTable(range: PixelRange): Float32Array {
  if (range === "unit") return UNIT;
  if (range === "symmetric") return SYMMETRIC;
  throw new RangeError(`pixel range must be "unit" or "symmetric", got ${range}`);
}

/** 8-bit pixels as float32 in a range (a fresh array unless `out` is given). */
export function toFloat(pixels: Uint8Array, range: PixelRange, out?: Float32Array): Float32Array {
  const table = pixelTable(range);
  const dst = out ?? new Float32Array(pixels.length);
  if (dst.length < pixels.length) throw new RangeError(`toFloat: out holds ${dst.length} < ${pixels.length}`);
  for (let i = 0; i < pixels.length; i++) dst[i] = table[pixels[i]];
  return dst;
}

/** [0, 1]: x / 255. */
export const toUnitRange = (pixels: Uint8Array): Float32Array => toFloat(pixels, "unit");
/** [-1, 1]: 2 (x / 255) - 1. */
export const toSymmetricRange = (pixels: Uint8Array): Float32Array => toFloat(pixels, "symmetric");

/** A dataset after checking that sizes agree and every label names a class; `file` names the source. */
export function makeDataset(d: Dataset, file = d.name): Dataset {
  const per = d.c * d.h * d.w;
  for (const [k, v] of Object.entries({ n: d.n, c: d.c, h: d.h, w: d.w })) {
    if (!(Number.isInteger(v) && v >= 0)) throw new DataError(file, `${k} = ${v} is not a count`);
  }
  if (d.images.length !== d.n * per) {
    throw new DataError(file, `${d.images.length} pixel bytes for ${d.n} images of ${d.c}x${d.h}x${d.w}`);
  }
  if (d.labels.length !== d.n) throw new DataError(file, `${d.labels.length} labels for ${d.n} images`);
  const bad = d.labels.findIndex((l) => l >= d.classes.length);
  if (bad >= 0) {
    throw new DataError(file, `label ${d.labels[bad]} at item ${bad} is not < ${d.classes.length} classes`);
  }
  return d;
}

/** Images [start, end) as a dataset sharing memory with `d` (e.g. a quick evaluation subset). */
export function slice(d: Dataset, start: number, end = d.n): Dataset {
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= d.n)) {
    throw new RangeError(`slice: [${start}, ${end}) is not within [0, ${d.n})`);
  }
  const per = d.c * d.h * d.w;
  return {
    ...d,
    name: `${d.name}[${start}:${end}]`,
    images: d.images.subarray(start * per, end * per),
    labels: d.labels.subarray(start, end),
    n: end - start,
  };
}

/** How many items each class has. */
export function labelCounts(d: Dataset): number[] {
  const counts = new Array<number>(d.classes.length).fill(0);
  for (const l of d.labels) counts[l]++;
  return counts;
}
