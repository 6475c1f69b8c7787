/**
 * Seeded shuffling and batching. Batch b of epoch e is a pure function of (dataset, options, e, b), and
 * training step s is batch s mod B of epoch floor(s / B) (B batches per epoch), so a resumed run
 * reproduces the data order from (seed, step) alone, with no iterator state to save.
 *
 * - order of epoch e: `permutation(n, mixSeed(seed, e, 1))` (random.ts), or 0..n-1 without shuffling;
 * - horizontal flip (optional, for CIFAR-10): item i is mirrored in epoch e when
 *   `mixSeed(seed, e, 2, i) >>> 31` is 1 (a fair coin per item and epoch, independent of batch size).
 *
 * The last partial batch is dropped by default: shapes are baked into kernels, so a differently sized
 * final batch would compile new pipelines (and a uniform batch size keeps the loss scale steady).
 */
import { type Dataset, type PixelRange, pixelTable } from "./dataset.ts";
import { checkU32, mixSeed, permutation } from "./random.ts";

const STREAM_ORDER = 1;
const STREAM_FLIP = 2;

export interface BatcherOptions {
  batchSize: number;
  seed: number;
  /** "unit" [0, 1] for classifiers, "symmetric" [-1, 1] for diffusion models. */
  range: PixelRange;
  /** Shuffle each epoch (default true; false keeps dataset order, e.g. for evaluation). */
  shuffle?: boolean;
  /** Drop the final partial batch (default true). */
  dropLast?: boolean;
  /** Mirror each image left-right with probability 1/2 per item and epoch (default false). */
  flip?: boolean;
}

export interface Batch {
  /** shape[0] * c * h * w floats, NCHW. */
  readonly images: Float32Array;
  readonly labels: Uint32Array;
  /** The dataset item of each row. */
  readonly indices: Uint32Array;
  /** 1 where the row was mirrored. */
  readonly flipped: Uint8Array;
  readonly shape: readonly [number, number, number, number];
  readonly epoch: number;
  readonly index: number;
  readonly step: number;
}

export class Batcher {
  readonly batchesPerEpoch: number;
  readonly batchSize: number;
  private readonly options: Required<BatcherOptions>;
  private cached: { epoch: number; order: Uint32Array } | null = null;

  constructor(readonly data: Dataset, options: BatcherOptions) {
    this.options = { shuffle: true, dropLast: true, flip: false, ...options };
    const { batchSize, seed, dropLast } = this.options;
    if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
      throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    }
    checkU32("seed", seed);
    pixelTable(this.options.range); // validates the range name
    this.batchSize = batchSize;
    this.batchesPerEpoch = dropLast ? Math.floor(data.n / batchSize) : Math.ceil(data.n / batchSize);
    if (this.batchesPerEpoch === 0) {
      throw new RangeError(`${data.name}: ${data.n} items make no batch of ${batchSize} (dropLast)`);
    }
  }

  /** The order of the items in an epoch (a permutation of 0..n-1). */
  order(epoch: number): Uint32Array {
    checkU32("epoch", epoch);
    if (this.cached?.epoch !== epoch) {
      const n = this.data.n;
      const order = this.options.shuffle
        ? permutation(n, mixSeed(this.options.seed, epoch, STREAM_ORDER))
        : Uint32Array.from({ length: n }, (_, i) => i);
      this.cached = { epoch, order };
    }
    return this.cached!.order;
  }

  /** Whether item `i` is mirrored in an epoch (false unless the flip option is on). */
  isFlipped(epoch: number, i: number): boolean {
    return this.options.flip && mixSeed(this.options.seed, epoch, STREAM_FLIP, i) >>> 31 === 1;
  }

  /** Batch `index` of `epoch`. */
  batch(epoch: number, index: number): Batch {
    if (!(Number.isInteger(index) && index >= 0 && index < this.batchesPerEpoch)) {
      throw new RangeError(`batch index ${index} not in 0..${this.batchesPerEpoch - 1}`);
    }
    const { c, h, w, images: src, labels: srcLabels } = this.data;
    const per = c * h * w;
    const indices = this.order(epoch).slice(index * this.batchSize, (index + 1) * this.batchSize);
    const n = indices.length;
    const table = pixelTable(this.options.range);
    const images = new Float32Array(n * per), labels = new Uint32Array(n), flipped = new Uint8Array(n);
    for (let r = 0; r < n; r++) {
      const item = indices[r], from = item * per, to = r * per;
      labels[r] = srcLabels[item];
      if (this.isFlipped(epoch, item)) {
        flipped[r] = 1;
        for (let row = 0; row < c * h; row++) {
          const a = from + row * w, b = to + row * w;
          for (let x = 0; x < w; x++) images[b + x] = table[src[a + w - 1 - x]];
        }
      } else {
        for (let k = 0; k < per; k++) images[to + k] = table[src[from + k]];
      }
    }
    const step = epoch * this.batchesPerEpoch + index;
    return { images, labels, indices, flipped, shape: [n, c, h, w], epoch, index, step };
  }

  /** The batch of a global training step (epoch = floor(step / batchesPerEpoch)). */
  atStep(step: number): Batch {
    if (!(Number.isSafeInteger(step) && step >= 0)) throw new RangeError(`step must be >= 0, got ${step}`);
    return this.batch(Math.floor(step / this.batchesPerEpoch), step % this.batchesPerEpoch);
  }

  /** The batches of one epoch, in order. */
  *epoch(epoch: number): Generator<Batch> {
    for (let b = 0; b < this.batchesPerEpoch; b++) yield this.batch(epoch, b);
  }

  /** Batches from a step onwards, without end (resume a run with `steps(savedStep)`). */
  *steps(from = 0): Generator<Batch> {
    for (let s = from;; s++) yield this.atStep(s);
  }
}
