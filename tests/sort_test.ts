import { freshSeed, randArray, rng, testGpu } from "./util.ts";
import { argsort, gatherRows, rank, sort, sortRows, sortSchedule } from "../src/ops/sort.ts";

const gpu = await testGpu();

/** The documented order: numeric, -0 == +0, NaN after everything, ties by index. */
function compare(row: Float32Array, i: number, j: number): number {
  const a = row[i], b = row[j], an = Number.isNaN(a), bn = Number.isNaN(b);
  if (an || bn) return an && bn ? i - j : an ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : i - j;
}

/** CPU reference per row: stable argsort, its inverse (rank), and the sorted bits. */
function sortCpu(x: Float32Array, l: number) {
  const bits = new Uint32Array(x.buffer);
  const indices = new Uint32Array(x.length),
    ranks = new Uint32Array(x.length),
    sorted = new Uint32Array(x.length);
  for (let o = 0; o < x.length; o += l) {
    const row = x.subarray(o, o + l);
    const order = Array.from({ length: l }, (_, i) => i).sort((i, j) => compare(row, i, j));
    order.forEach((i, p) => {
      indices[o + p] = i;
      ranks[o + i] = p;
      sorted[o + p] = bits[o + i];
    });
  }
  return { indices, ranks, sorted };
}

function assertEqualU32(out: Uint32Array, ref: Uint32Array, what: string): void {
  for (let i = 0; i < ref.length; i++) {
    if (out[i] !== ref[i]) throw new Error(`${what}: element ${i} is ${out[i]}, want ${ref[i]}`);
  }
}

/** Inputs of a row length: random values, values from a small integer set (many ties, -0 among them),
 * and specials (NaN, infinities, signed zeros) mixed into ties. */
function inputs(kind: string, n: number, seed: number): Float32Array {
  if (kind === "random") return Float32Array.from(randArray(n, seed, -3, 3));
  const r = rng(seed);
  const set = kind === "ties"
    ? [-2, -1, -0, 0, 1, 2]
    : [NaN, -Infinity, Infinity, -0, 0, 1, -1, 3.5e38, -1e-45];
  const x = Float32Array.from({ length: n }, () => set[Math.floor(r() * set.length)]);
  if (kind === "specials") {
    // NaNs of every sign and payload must sort as one value (bits written directly: JS would canonicalise)
    const bits = new Uint32Array(x.buffer), nans = [0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff];
    for (let i = 0; i < n; i++) if (r() < 0.1) bits[i] = nans[Math.floor(r() * nans.length)];
  }
  return x;
}

async function checkSort(shape: number[], kind: string): Promise<void> {
  const seed = freshSeed(), l = shape[shape.length - 1];
  const x = inputs(kind, shape.reduce((a, b) => a * b, 1), seed);
  const ref = sortCpu(x, l);
  const what = `[${shape}] ${kind} seed=${seed}`;
  const out = sortRows(gpu, gpu.tensor(x, shape), { values: true, indices: true, rank: true });
  const values = await gpu.readU32(out.values!), indices = await gpu.readU32(out.indices!);
  const ranks = await gpu.readU32(out.rank!);
  assertEqualU32(values, ref.sorted, `sorted bits ${what}`);
  assertEqualU32(indices, ref.indices, `argsort ${what}`);
  assertEqualU32(ranks, ref.ranks, `rank ${what}`);
  // rank is a permutation of each row and the inverse of argsort
  for (let o = 0; o < x.length; o += l) {
    const seen = new Uint8Array(l);
    for (let i = 0; i < l; i++) {
      const r = ranks[o + i];
      if (r >= l || seen[r]++) throw new Error(`rank row ${o / l} is not a permutation ${what}`);
      if (indices[o + r] !== i) throw new Error(`argsort[rank[${i}]] != ${i} in row ${o / l} ${what}`);
    }
  }
}

Deno.test("sortRows: values, stable argsort and rank vs CPU; lengths 1..4096, ties, NaN and signed zeros", async () => {
  const shapes = [[3, 1], [5, 7], [4, 16], [2, 17], [3, 784], [3, 1000], [2, 4096], [2, 3, 7]];
  for (const shape of shapes) {
    for (const kind of ["random", "ties", "specials"]) await checkSort(shape, kind);
  }
});

Deno.test("sort, argsort, rank alone write only their output, same results as sortRows", async () => {
  for (const shape of [[3, 5], [2, 300]]) {
    const seed = freshSeed(), l = shape[1];
    const x = inputs("ties", shape[0] * l, seed);
    const ref = sortCpu(x, l), t = gpu.tensor(x, shape);
    const what = `[${shape}] seed=${seed}`;
    assertEqualU32(new Uint32Array((await gpu.read(sort(gpu, t))).buffer), ref.sorted, `sort ${what}`);
    assertEqualU32(await gpu.readU32(argsort(gpu, t)), ref.indices, `argsort ${what}`);
    assertEqualU32(await gpu.readU32(rank(gpu, t)), ref.ranks, `rank ${what}`);
  }
});

Deno.test("gatherRows: out[r, i] = values[r, idx[r, i]]; out-of-range index gives NaN", async () => {
  for (const [rows, m, l] of [[1, 1, 1], [3, 7, 5], [4, 1000, 1003]]) {
    const seed = freshSeed(), r = rng(seed);
    const values = Float32Array.from(randArray(rows * m, seed));
    const idx = Uint32Array.from({ length: rows * l }, () => Math.floor(r() * (m + 1))); // m is out of range
    const out = await gpu.read(gatherRows(gpu, gpu.tensor(values, [rows, m]), gpu.tensor(idx, [rows, l])));
    for (let i = 0; i < rows * l; i++) {
      const j = idx[i], want = j < m ? values[Math.floor(i / l) * m + j] : NaN;
      if (!Object.is(out[i], want)) {
        throw new Error(`gather [${rows},${m}]->${l} at ${i}: ${out[i]} not ${want} seed=${seed}`);
      }
    }
  }
});

Deno.test("rank-based Gaussian mapping: gatherRows(sort(z), rank(acc)) vs CPU; no compile on repeat", async () => {
  const rows = 6, l = 1024, seed = freshSeed();
  const z = Float32Array.from(randArray(rows * l, seed)), acc = inputs("ties", rows * l, seed + 1);
  const zt = gpu.tensor(z, [rows, l]), at = gpu.tensor(acc, [rows, l]);
  const run = () => gatherRows(gpu, sort(gpu, zt), rank(gpu, at));
  const out = new Uint32Array((await gpu.read(run())).buffer);
  const zs = sortCpu(z, l).sorted, ar = sortCpu(acc, l).ranks;
  const ref = Uint32Array.from({ length: rows * l }, (_, i) => zs[Math.floor(i / l) * l + ar[i]]);
  assertEqualU32(out, ref, `mapping seed=${seed}`);
  const before = { ...gpu.stats };
  run();
  const pipelines = gpu.stats.pipelines - before.pipelines, submits = gpu.stats.submits - before.submits;
  if (pipelines || submits) {
    throw new Error(`a repeated mapping compiled ${pipelines} pipelines, submitted ${submits}`);
  }
});

Deno.test("sortSchedule: dispatch counts (21 passes for a row of 4096) and full coverage of the network", () => {
  const counts = [1, 16, 32, 1024, 4096].map((p) => sortSchedule(p).length);
  if (counts.join() !== "1,1,3,15,21") throw new Error(`passes per row length: ${counts}`);
  // every bitonic step (K, j) appears exactly once, in order
  for (const p of [2, 8, 64, 4096]) {
    const steps: string[] = [], want: string[] = [];
    for (const s of sortSchedule(p)) {
      for (let k = s.kLo; k <= s.kHi; k *= 2) {
        for (let j = Math.min(k / 2, s.jTop); j >= s.ls; j /= 2) steps.push(`${k}:${j}`);
      }
    }
    for (let k = 2; k <= p; k *= 2) for (let j = k / 2; j >= 1; j /= 2) want.push(`${k}:${j}`);
    if (steps.join() !== want.join()) throw new Error(`schedule of ${p}: ${steps} vs ${want}`);
  }
});

Deno.test("sortRows: more than 65535 x 64 invocations (2-D grid), rows of 2", async () => {
  const rows = 65535 * 64 + 61, seed = freshSeed();
  const x = inputs("ties", rows * 2, seed);
  const ref = sortCpu(x, 2);
  const out = sortRows(gpu, gpu.tensor(x, [rows, 2]), { values: true, rank: true });
  assertEqualU32(await gpu.readU32(out.values!), ref.sorted, `sorted [${rows},2] seed=${seed}`);
  assertEqualU32(await gpu.readU32(out.rank!), ref.ranks, `rank [${rows},2] seed=${seed}`);
  out.values!.dispose();
  out.rank!.dispose();
});

Deno.test("sort: bad inputs are rejected", () => {
  const bad: [string, () => unknown][] = [
    ["u32 values", () => sort(gpu, gpu.tensor(new Uint32Array(4)))],
    ["no output", () => sortRows(gpu, gpu.tensor(new Float32Array(4)), {})],
    ["f32 indices", () => gatherRows(gpu, gpu.tensor(new Float32Array(4)), gpu.tensor(new Float32Array(4)))],
    [
      "rows differ",
      () => gatherRows(gpu, gpu.tensor(new Float32Array(6), [2, 3]), gpu.tensor(new Uint32Array(6), [3, 2])),
    ],
  ];
  for (const [what, f] of bad) {
    let threw = false;
    try {
      f();
    } catch {
      threw = true;
    }
    if (!threw) throw new Error(`${what} was accepted`);
  }
});
