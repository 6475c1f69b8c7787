import { assertClose, f32, finiteDiff, freshSeed, randArray, testGpu } from "./util.ts";
import {
  groupNorm,
  groupNormBackward,
  type GroupNormVariant,
  groupNormVariant,
} from "../src/ops/groupnorm.ts";
import * as ad from "../src/autodiff/groupnorm.ts";
import { backward, constant, leaf } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";

const gpu = await testGpu();
const VARIANTS: GroupNormVariant[] = ["software", "gpu"];

/** float64 GroupNorm: y, and mean/rstd per (n, group). */
function refGroupNorm(
  x: ArrayLike<number>,
  shape: number[],
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  groups: number,
  eps = 1e-5,
): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const [n, c] = shape;
  const hw = shape.length === 4 ? shape[2] * shape[3] : 1;
  const m = (c / groups) * hw;
  const y = new Float64Array(x.length),
    mean = new Float64Array(n * groups),
    rstd = new Float64Array(n * groups);
  for (let r = 0; r < n * groups; r++) {
    let s = 0;
    for (let e = 0; e < m; e++) s += x[r * m + e];
    const mu = s / m;
    let v = 0;
    for (let e = 0; e < m; e++) v += (x[r * m + e] - mu) ** 2;
    const rs = 1 / Math.sqrt(v / m + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let e = 0; e < m; e++) {
      const ch = (r % groups) * (c / groups) + Math.floor(e / hw);
      y[r * m + e] = (x[r * m + e] - mu) * rs * gamma[ch] + beta[ch];
    }
  }
  return { y, mean, rstd };
}

const CASES: { shape: number[]; groups: number }[] = [
  { shape: [3, 6, 5, 7], groups: 1 },
  { shape: [3, 6, 5, 7], groups: 2 },
  { shape: [3, 6, 5, 7], groups: 6 },
  { shape: [2, 12, 13, 11], groups: 4 },
  { shape: [5, 10], groups: 2 },
  { shape: [4, 8], groups: 8 },
  { shape: [3, 8, 4, 5], groups: 4 }, // HW % 4 == 0: the vec4 path
  { shape: [3, 16, 7, 7], groups: 4 }, // M % 4 == 0 only: vec4s straddle channels
  { shape: [5, 16], groups: 2 }, // the same for [N, C]
  { shape: [2, 32, 28, 28], groups: 8 },
];

function inputs(shape: number[], seed: number, offset = 0) {
  const c = shape[1];
  const x = randArray(shape.reduce((a, b) => a * b), seed).map((v) => Math.fround(v + offset));
  return { x, gamma: randArray(c, seed + 1, 0.5, 1.5), beta: randArray(c, seed + 2) };
}

for (const variant of VARIANTS) {
  Deno.test(`groupNorm[${variant}]: forward y, mean, rstd match float64`, async () => {
    groupNormVariant.force = variant;
    try {
      for (const { shape, groups } of CASES) {
        for (const offset of [0, 20]) {
          const s = freshSeed();
          const { x, gamma, beta } = inputs(shape, s, offset);
          const ref = refGroupNorm(x, shape, gamma, beta, groups);
          const out = groupNorm(
            gpu,
            gpu.tensor(f32(x), shape),
            gpu.tensor(f32(gamma)),
            gpu.tensor(f32(beta)),
            groups,
          );
          const what = `${variant} [${shape}] G=${groups} offset=${offset} seed=${s}`;
          assertClose(await gpu.read(out.y), ref.y, 1e-5, `y ${what}`);
          assertClose(await gpu.read(out.mean), ref.mean, 1e-5, `mean ${what}`);
          assertClose(await gpu.read(out.rstd), ref.rstd, 1e-5, `rstd ${what}`);
        }
      }
    } finally {
      groupNormVariant.force = null;
    }
  });

  Deno.test(`groupNorm[${variant}]: backward dx, dgamma, dbeta match finite differences`, async () => {
    groupNormVariant.force = variant;
    try {
      const small = [
        { shape: [2, 4, 3, 3], groups: 2 },
        { shape: [2, 4, 2, 2], groups: 2 }, // vec4 path
        { shape: [2, 8, 1, 3], groups: 2 }, // vec4s straddling channels
        { shape: [3, 8], groups: 2 },
        { shape: [3, 6, 1, 5], groups: 1 },
        { shape: [2, 6, 2, 3], groups: 6 },
        { shape: [3, 9], groups: 3 }, // not M = 2: xhat = ±1 there, the gradient is ~eps-sized noise
      ];
      for (const { shape, groups } of small) {
        const s = freshSeed();
        const { x, gamma, beta } = inputs(shape, s);
        const dy = randArray(x.length, s + 3);
        const fx = finiteDiff((xv) => refGroupNorm(xv, shape, gamma, beta, groups).y, x, dy);
        const fg = finiteDiff((gv) => refGroupNorm(x, shape, gv, beta, groups).y, gamma, dy);
        const fb = finiteDiff((bv) => refGroupNorm(x, shape, gamma, bv, groups).y, beta, dy);
        const tx = gpu.tensor(f32(x), shape), tg = gpu.tensor(f32(gamma));
        const fwd = groupNorm(gpu, tx, tg, gpu.tensor(f32(beta)), groups);
        const g = groupNormBackward(gpu, gpu.tensor(f32(dy), shape), tx, fwd.mean, fwd.rstd, tg, groups);
        const what = `${variant} [${shape}] G=${groups} seed=${s}`;
        assertClose(await gpu.read(g.dx), fx, 1e-4, `dx ${what}`);
        assertClose(await gpu.read(g.dgamma), fg, 1e-5, `dgamma ${what}`);
        assertClose(await gpu.read(g.dbeta), fb, 1e-5, `dbeta ${what}`);
      }
    } finally {
      groupNormVariant.force = null;
    }
  });
}

Deno.test("groupNorm: larger backward vs analytic float64 gradient (odd sizes, both variants)", async () => {
  // finite differences are too slow here; the analytic formula is checked against them above
  for (const variant of VARIANTS) {
    for (const shape of [[3, 12, 9, 7], [3, 12, 4, 6], [2, 16, 5, 5]]) {
      const groups = 4;
      groupNormVariant.force = variant;
      try {
        const s = freshSeed();
        const { x, gamma, beta } = inputs(shape, s, 3);
        const dy = randArray(x.length, s + 3);
        const ref = refGroupNorm(x, shape, gamma, beta, groups);
        const [n, c] = shape, hw = shape[2] * shape[3], cpg = c / groups, m = cpg * hw;
        const dx = new Float64Array(x.length), dgamma = new Float64Array(c), dbeta = new Float64Array(c);
        for (let r = 0; r < n * groups; r++) {
          let a = 0, b = 0;
          const xhat = (e: number) => (x[r * m + e] - ref.mean[r]) * ref.rstd[r];
          const ch = (e: number) => (r % groups) * cpg + Math.floor(e / hw);
          for (let e = 0; e < m; e++) {
            const d = dy[r * m + e] * gamma[ch(e)];
            a += d;
            b += d * xhat(e);
            dgamma[ch(e)] += dy[r * m + e] * xhat(e);
            dbeta[ch(e)] += dy[r * m + e];
          }
          for (let e = 0; e < m; e++) {
            dx[r * m + e] = ref.rstd[r] * (dy[r * m + e] * gamma[ch(e)] - a / m - xhat(e) * b / m);
          }
        }
        const tx = gpu.tensor(f32(x), shape), tg = gpu.tensor(f32(gamma));
        const fwd = groupNorm(gpu, tx, tg, gpu.tensor(f32(beta)), groups);
        const g = groupNormBackward(gpu, gpu.tensor(f32(dy), shape), tx, fwd.mean, fwd.rstd, tg, groups);
        const what = `${variant} [${shape}] seed=${s}`;
        assertClose(await gpu.read(g.dx), dx, 1e-4, `dx ${what}`);
        assertClose(await gpu.read(g.dgamma), dgamma, 1e-5, `dgamma ${what}`);
        assertClose(await gpu.read(g.dbeta), dbeta, 1e-5, `dbeta ${what}`);
      } finally {
        groupNormVariant.force = null;
      }
    }
  }
});

Deno.test("groupNorm: autodiff wrapper end to end via backward", async () => {
  const shape = [2, 6, 3, 2], groups = 3, s = freshSeed();
  const { x, gamma, beta } = inputs(shape, s);
  const dy = randArray(x.length, s + 3);
  const xv = leaf(gpu.tensor(f32(x), shape)),
    gv = leaf(gpu.tensor(f32(gamma))),
    bv = constant(gpu.tensor(f32(beta)));
  scope(() => backward(ad.groupNorm(xv, gv, bv, groups), gpu.tensor(f32(dy), shape)));
  const fx = finiteDiff((v) => refGroupNorm(v, shape, gamma, beta, groups).y, x, dy);
  const fg = finiteDiff((v) => refGroupNorm(x, shape, v, beta, groups).y, gamma, dy);
  assertClose(await gpu.read(xv.grad!), fx, 1e-4, `dx seed=${s}`);
  assertClose(await gpu.read(gv.grad!), fg, 1e-5, `dgamma seed=${s}`);
  if (bv.grad) throw new Error("a constant received a gradient");
});

Deno.test("groupNorm: two dispatches per direction on the software variant, no readback", () => {
  const shape = [2, 8, 5, 5], groups = 4;
  const { x, gamma, beta } = inputs(shape, freshSeed());
  const tx = gpu.tensor(f32(x), shape), tg = gpu.tensor(f32(gamma)), tb = gpu.tensor(f32(beta));
  groupNormVariant.force = "software";
  gpu.poison = false; // poisoning adds a fill per new tensor
  try {
    const fused = (gpu.adapter.limits.maxStorageBuffersPerShaderStage ?? 8) >= 9;
    const before = { ...gpu.stats };
    const f = groupNorm(gpu, tx, tg, tb, groups);
    const mid = gpu.stats.dispatches;
    groupNormBackward(gpu, tx, tx, f.mean, f.rstd, tg, groups);
    const fwd = mid - before.dispatches, bwd = gpu.stats.dispatches - mid;
    if (fwd !== (fused ? 2 : 3) || bwd !== (fused ? 2 : 3)) {
      throw new Error(`dispatches: fwd ${fwd}, bwd ${bwd}`);
    }
    if (gpu.stats.readbacks !== before.readbacks) throw new Error("a readback inside the op");
  } finally {
    groupNormVariant.force = null;
    gpu.poison = true;
  }
});
