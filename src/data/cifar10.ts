/**
 * CIFAR-10 (Krizhevsky 2009) from the user's copy of the binary version (cifar-10-binary.tar.gz):
 * `data_batch_1.bin` .. `data_batch_5.bin` (train) and `test_batch.bin` (test), each a sequence of
 * 3073-byte records: the label byte, then 3072 bytes of 32x32 R, G and B planes, which is already one
 * NCHW image. Nothing is downloaded: the files must be in the given directory (or its
 * `cifar-10-batches-bin/` subdirectory, as the archive unpacks).
 */
import { type Dataset, makeDataset, type Split } from "./dataset.ts";
import { DataError } from "./errors.ts";
import { firstExisting, readDataFile } from "./files.ts";

export const CIFAR10_CLASSES: readonly string[] = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];

export const CIFAR10_FILES: Record<Split, readonly string[]> = {
  train: ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
  test: ["test_batch.bin"],
};

const PIXELS = 3 * 32 * 32;
const RECORD = 1 + PIXELS;

/** The records of one batch file, split into images (NCHW) and labels, each label checked < 10. */
export function parseCifar10Batch(
  bytes: Uint8Array,
  file: string,
): { images: Uint8Array; labels: Uint8Array } {
  if (bytes.length === 0) throw new DataError(file, "empty file");
  if (bytes.length % RECORD !== 0) {
    throw new DataError(
      file,
      `${bytes.length} bytes is not a multiple of the ${RECORD}-byte CIFAR-10 record`,
    );
  }
  const n = bytes.length / RECORD;
  const images = new Uint8Array(n * PIXELS), labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const label = bytes[i * RECORD];
    if (label >= CIFAR10_CLASSES.length) {
      throw new DataError(file, `label ${label} in record ${i} (byte ${i * RECORD}) is not in 0..9`);
    }
    labels[i] = label;
    images.set(bytes.subarray(i * RECORD + 1, (i + 1) * RECORD), i * PIXELS);
  }
  return { images, labels };
}

/** The directory that actually holds the batch files: `dir` or `dir/cifar-10-batches-bin`. */
async function batchesDir(dir: string, first: string): Promise<string> {
  if (await firstExisting(dir, [first])) return dir;
  const nested = `${dir}/cifar-10-batches-bin`;
  if (await firstExisting(nested, [first])) return nested;
  throw new DataError(
    `${dir}/${first}`,
    "file not found (CIFAR-10 needs the binary version's data_batch_1..5.bin and test_batch.bin)",
  );
}

/** CIFAR-10 train (all five batches, in order) or test, 3x32x32. */
export async function loadCifar10(dir: string, split: Split): Promise<Dataset> {
  const names = CIFAR10_FILES[split];
  const root = await batchesDir(dir, names[0]);
  const parts = [];
  for (const name of names) {
    const file = `${root}/${name}`;
    parts.push(parseCifar10Batch(await readDataFile(file), file));
  }
  const n = parts.reduce((s, p) => s + p.labels.length, 0);
  const images = new Uint8Array(n * PIXELS), labels = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * PIXELS);
    labels.set(p.labels, at);
    at += p.labels.length;
  }
  return makeDataset({
    name: `cifar10/${split}`,
    images,
    labels,
    n,
    c: 3,
    h: 32,
    w: 32,
    classes: CIFAR10_CLASSES,
  }, root);
}
