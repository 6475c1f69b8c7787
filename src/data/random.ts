/**
 * Seeded, documented randomness for the data pipeline. Data order must be reproducible from (seed, epoch)
 * alone, on any machine and in any version, so a resumed run sees exactly the batches it would have seen:
 *
 * - `hash32` is Chris Wellons' "lowbias32" integer hash; `mixSeed(a, b, ...)` folds values into one
 *   32-bit seed by hashing (h ^ value) for each value in turn, starting from 0x9e3779b9.
 * - `mulberry32` (Tommy Ettinger) is the generator: a 32-bit state stepped by 0x6d2b79f5.
 * - `permutation(n, seed)` is the classic Fisher-Yates (Durstenfeld) shuffle of 0..n-1,
 *   walking i from n-1 down to 1 and swapping i with an unbiased uniform j in [0, i] (rejection sampling).
 *
 * Changing any of these changes every data order: tests pin known values.
 */

/** lowbias32 (Chris Wellons): a fast, well-mixed bijection on 32-bit integers. */
export function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d);
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** One 32-bit seed from several integers (seed, epoch, stream id, ...); order matters. */
export function mixSeed(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) h = hash32((h ^ v) >>> 0);
  return h;
}

/** mulberry32: a generator of uniform 32-bit unsigned integers. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A uniform integer in [0, bound) without modulo bias: redraw the top partial range of 2^32. */
export function uniformInt(next: () => number, bound: number): number {
  if (!(Number.isInteger(bound) && bound >= 1 && bound <= 2 ** 32)) {
    throw new RangeError(`uniformInt: bound ${bound} not an integer in [1, 2^32]`);
  }
  const limit = 2 ** 32 - (2 ** 32 % bound);
  let u = next();
  while (u >= limit) u = next();
  return u % bound;
}

/** The Fisher-Yates permutation of 0..n-1 for a seed (see the module comment for the exact algorithm). */
export function permutation(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const next = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = uniformInt(next, i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** Throws unless `v` is an integer in [0, 2^32): seeds, epochs and steps must be exact. */
export function checkU32(what: string, v: number): void {
  if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 32)) {
    throw new RangeError(`${what} must be an integer in [0, 2^32), got ${v}`);
  }
}
