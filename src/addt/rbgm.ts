/**
 * RBGM, the rank-based Gaussian mapping of ADDT: for each (image, channel) row of H*W values, draw a fresh
 * standard normal sample of the row's size, sort it, and give each position the sample value whose rank
 * equals that position's rank in the input: out = gather(sort(z), rank(acc)) per row. The output keeps
 * only the ordering of `acc` and is exactly a standard normal sample (sampled order statistics, not fixed
 * quantiles; no further scaling), as in the authors' train_ADDT.py.
 *
 * Ties in `acc` are broken by position (the sort ops are stable), so equal inputs get increasing values in
 * index order, the same way on every run. The sample z comes from the Philox key at `site`: a fresh sample
 * per (key counter, site), reproducible bit for bit.
 */
import type { Gpu } from "../gpu/context.ts";
import { ShapeError } from "../gpu/errors.ts";
import { keep, Tensor } from "../tensor.ts";
import { normal } from "../ops/random.ts";
import { gatherRows, rank, sort } from "../ops/sort.ts";

/** RBGM of acc [N, C, H, W] (rows of H*W) with the sample drawn at (key, site); same shape as acc. */
export function rbgm(gpu: Gpu, acc: Tensor, key: Tensor, site: number): Tensor {
  if (acc.shape.length !== 4 || acc.dtype !== "f32") {
    throw new ShapeError("rbgm", `expects f32 images [N, C, H, W], got ${acc}`);
  }
  const [n, c, h, w] = acc.shape;
  const rows = [n * c, h * w];
  const z = normal(gpu, rows, key, site);
  const sorted = sort(gpu, z);
  const order = rank(gpu, acc.reshape(rows));
  const out = gatherRows(gpu, sorted, order);
  for (const t of [z, sorted, order]) t.dispose(); // back to the pool, after these dispatches in order
  return owned(out, acc.shape);
}

/** The same pooled buffer under another shape, owned by the returned tensor (a `reshape` view is not
 * owned by any scope, so returning one would let the scope free the buffer under it). */
function owned(t: Tensor, shape: readonly number[]): Tensor {
  keep(t); // t's handle leaves every scope and is dropped; the new handle takes over the buffer
  return new Tensor(t.gpu, t.buffer, shape, t.dtype, t.offset, true);
}
