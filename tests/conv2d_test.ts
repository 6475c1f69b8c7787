import { assertClose, f32, finiteDiff, freshSeed, randArray, testGpu } from "./util.ts";
import {
  conv2d,
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  type ConvVariant,
  forceConv2dVariant,
} from "../src/ops/conv2d.ts";
import * as ad from "../src/autodiff/conv2d.ts";
import { backward, constant, leaf } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";

const gpu = await testGpu();
// The adapter's own variant runs every case; the other variant runs a few representative cases (on
// llvmpipe each shared-memory kernel takes seconds to compile). CONV_VARIANTS=register,tiled runs both
// variants on every case.
const NATIVE: ConvVariant = gpu.adapter.isSoftware ? "register" : "tiled";
const OTHER: ConvVariant = NATIVE === "register" ? "tiled" : "register";
const VARIANTS = (Deno.env.get("CONV_VARIANTS")?.split(",") ?? [NATIVE]) as ConvVariant[];

// ---------------------------------------------------------------- float64 references

interface Shape {
  n: number;
  ci: number;
  h: number;
  w: number;
  co: number;
  k: number;
  s: 1 | 2;
  p: number;
}
const outSize = (size: number, sh: Shape) => Math.floor((size + 2 * sh.p - sh.k) / sh.s) + 1;

function convRef(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, sh: Shape) {
  const { n, ci, h, w: wd, co, k, s, p } = sh;
  const oh = outSize(h, sh), ow = outSize(wd, sh);
  const y = new Float64Array(n * co * oh * ow);
  for (let b_ = 0; b_ < n; b_++) {
    for (let o = 0; o < co; o++) {
      for (let oy = 0; oy < oh; oy++) {
        for (let ox = 0; ox < ow; ox++) {
          let acc = b ? b[o] : 0;
          for (let i = 0; i < ci; i++) {
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * s - p + ky;
              if (iy < 0 || iy >= h) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * s - p + kx;
                if (ix < 0 || ix >= wd) continue;
                acc += w[((o * ci + i) * k + ky) * k + kx] * x[((b_ * ci + i) * h + iy) * wd + ix];
              }
            }
          }
          y[((b_ * co + o) * oh + oy) * ow + ox] = acc;
        }
      }
    }
  }
  return y;
}

/** The adjoint of convRef: dx and dW for an output gradient dy (checked against finite differences). */
function convGradRef(x: ArrayLike<number>, w: ArrayLike<number>, dy: ArrayLike<number>, sh: Shape) {
  const { n, ci, h, w: wd, co, k, s, p } = sh;
  const oh = outSize(h, sh), ow = outSize(wd, sh);
  const dx = new Float64Array(n * ci * h * wd), dw = new Float64Array(co * ci * k * k);
  const db = new Float64Array(co);
  for (let b_ = 0; b_ < n; b_++) {
    for (let o = 0; o < co; o++) {
      for (let oy = 0; oy < oh; oy++) {
        for (let ox = 0; ox < ow; ox++) {
          const g = dy[((b_ * co + o) * oh + oy) * ow + ox];
          db[o] += g;
          for (let i = 0; i < ci; i++) {
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * s - p + ky;
              if (iy < 0 || iy >= h) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * s - p + kx;
                if (ix < 0 || ix >= wd) continue;
                const wi = ((o * ci + i) * k + ky) * k + kx, xi = ((b_ * ci + i) * h + iy) * wd + ix;
                dx[xi] += g * w[wi];
                dw[wi] += g * x[xi];
              }
            }
          }
        }
      }
    }
  }
  return { dx, dw, db };
}

function inputs(sh: Shape, seed: number) {
  const oh = outSize(sh.h, sh), ow = outSize(sh.w, sh);
  return {
    x: randArray(sh.n * sh.ci * sh.h * sh.w, seed),
    w: randArray(sh.co * sh.ci * sh.k * sh.k, seed + 1),
    b: randArray(sh.co, seed + 2),
    dy: randArray(sh.n * sh.co * oh * ow, seed + 3),
    oh,
    ow,
  };
}

const describe = (sh: Shape) => `${sh.n}x${sh.ci}x${sh.h}x${sh.w}->${sh.co} k${sh.k} s${sh.s} p${sh.p}`;

async function withVariant(v: ConvVariant, fn: () => Promise<void>): Promise<void> {
  forceConv2dVariant(v);
  try {
    await fn();
  } finally {
    forceConv2dVariant(null);
  }
}

// small odd shapes over every kernel size, stride and padding (alternating 7x7 and 9x5 images)
const SMALL: Shape[] = [];
for (const k of [1, 3]) {
  for (const s of [1, 2] as const) {
    for (const p of [0, 1]) {
      SMALL.push(
        (k + s + p) % 2
          ? { n: 2, ci: 3, h: 7, w: 7, co: 5, k, s, p }
          : { n: 2, ci: 3, h: 9, w: 5, co: 5, k, s, p },
      );
    }
  }
}

// ---------------------------------------------------------------- tests

Deno.test("conv2d forward matches float64 on odd shapes, with and without bias", async () => {
  for (const v of VARIANTS) {
    await withVariant(v, async () => {
      for (const sh of SMALL) {
        for (const withBias of [true, false]) {
          const seed = freshSeed();
          const d = inputs(sh, seed);
          const y = scope(() =>
            conv2d(
              gpu,
              gpu.tensor(f32(d.x), [sh.n, sh.ci, sh.h, sh.w]),
              gpu.tensor(f32(d.w), [sh.co, sh.ci, sh.k, sh.k]),
              withBias ? gpu.tensor(f32(d.b)) : null,
              { stride: sh.s, padding: sh.p },
            )
          );
          if (y.shape.join() !== [sh.n, sh.co, d.oh, d.ow].join()) throw new Error(`shape [${y.shape}]`);
          const what = `${v} forward ${describe(sh)} bias=${withBias} seed=${seed}`;
          assertClose(await gpu.read(y), convRef(d.x, d.w, withBias ? d.b : null, sh), 1e-5, what);
          y.dispose();
        }
      }
    });
  }
});

Deno.test("conv2d gradients (input, weight, bias) match finite differences on odd shapes", async () => {
  for (const v of VARIANTS) {
    await withVariant(v, async () => {
      for (const sh of SMALL) {
        const seed = freshSeed();
        const d = inputs(sh, seed);
        const opts = { stride: sh.s, padding: sh.p };
        const [dx, dw, db] = scope(() => {
          const x = gpu.tensor(f32(d.x), [sh.n, sh.ci, sh.h, sh.w]);
          const dy = gpu.tensor(f32(d.dy), [sh.n, sh.co, d.oh, d.ow]);
          const w = gpu.tensor(f32(d.w), [sh.co, sh.ci, sh.k, sh.k]);
          return [
            conv2dBackwardInput(gpu, dy, w, x.shape, opts),
            conv2dBackwardWeight(gpu, x, dy, w.shape, opts),
            conv2dBackwardBias(gpu, dy),
          ];
        });
        const what = `${v} ${describe(sh)} seed=${seed}`;
        const fdx = finiteDiff((xv) => convRef(xv, d.w, null, sh), d.x, d.dy);
        const fdw = finiteDiff((wv) => convRef(d.x, wv, null, sh), d.w, d.dy);
        const fdb = finiteDiff((bv) => convRef(d.x, d.w, bv, sh), d.b, d.dy);
        assertClose(await gpu.read(dx), fdx, 1e-5, `dx ${what}`);
        assertClose(await gpu.read(dw), fdw, 1e-5, `dw ${what}`);
        assertClose(await gpu.read(db), fdb, 1e-5, `db ${what}`);
        // the analytic reference used for the mid-size shapes below agrees with finite differences too
        const ref = convGradRef(d.x, d.w, d.dy, sh);
        assertClose(ref.dx, fdx, 1e-7, `reference dx ${what}`);
        assertClose(ref.dw, fdw, 1e-7, `reference dw ${what}`);
        for (const t of [dx, dw, db]) t.dispose();
      }
    });
  }
});

/** Checks forward, input gradient and weight gradient of one shape against the float64 reference. */
async function checkAllKernels(v: ConvVariant, sh: Shape): Promise<void> {
  const seed = freshSeed();
  const d = inputs(sh, seed);
  const opts = { stride: sh.s, padding: sh.p };
  const [y, dx, dw] = scope(() => {
    const x = gpu.tensor(f32(d.x), [sh.n, sh.ci, sh.h, sh.w]);
    const w = gpu.tensor(f32(d.w), [sh.co, sh.ci, sh.k, sh.k]);
    const dy = gpu.tensor(f32(d.dy), [sh.n, sh.co, d.oh, d.ow]);
    return [
      conv2d(gpu, x, w, gpu.tensor(f32(d.b)), opts),
      conv2dBackwardInput(gpu, dy, w, x.shape, opts),
      conv2dBackwardWeight(gpu, x, dy, w.shape, opts),
    ];
  });
  const ref = convGradRef(d.x, d.w, d.dy, sh);
  const what = `${v} ${describe(sh)} seed=${seed}`;
  assertClose(await gpu.read(y), convRef(d.x, d.w, d.b, sh), 1e-5, `forward ${what}`);
  assertClose(await gpu.read(dx), ref.dx, 1e-5, `dx ${what}`);
  assertClose(await gpu.read(dw), ref.dw, 1e-4, `dw ${what}`);
  for (const t of [y, dx, dw]) t.dispose();
}

Deno.test("conv2d mid-size shapes exercise full tiles in all three kernels", async () => {
  const shapes: Shape[] = [
    // two-row tiles, two input channels per weight-gradient lane
    { n: 2, ci: 16, h: 14, w: 14, co: 32, k: 3, s: 1, p: 1 },
    // stride-2 parity classes of the input gradient
    { n: 2, ci: 16, h: 14, w: 14, co: 32, k: 3, s: 2, p: 1 },
    // 1x1 as a GEMM over flattened pixels (vec4 stores), a partial last lane of input channels
    { n: 2, ci: 17, h: 14, w: 14, co: 10, k: 1, s: 1, p: 0 },
    // several tiles per row, a partial output-channel tile
    { n: 1, ci: 9, h: 21, w: 37, co: 67, k: 3, s: 1, p: 1 },
    // no padding with stride 2; vec4 stores of a 3x3 conv; chunked lanes for few input channels
    { n: 3, ci: 70, h: 5, w: 6, co: 12, k: 3, s: 2, p: 0 },
    { n: 2, ci: 5, h: 6, w: 8, co: 9, k: 3, s: 1, p: 1 },
  ];
  for (const v of VARIANTS) {
    await withVariant(v, async () => {
      for (const sh of shapes) await checkAllKernels(v, sh);
    });
  }
});

Deno.test("conv2d: the other adapter's variant on representative shapes", async () => {
  if (VARIANTS.includes(OTHER)) return; // already covered above
  await withVariant(OTHER, async () => {
    await checkAllKernels(OTHER, { n: 2, ci: 5, h: 9, w: 7, co: 6, k: 3, s: 1, p: 1 });
  });
});

Deno.test("conv2d autodiff: gradients of x, w and b through backward", async () => {
  const sh: Shape = { n: 2, ci: 4, h: 9, w: 6, co: 6, k: 3, s: 2, p: 1 };
  const seed = freshSeed();
  const d = inputs(sh, seed);
  const x = leaf(gpu.tensor(f32(d.x), [sh.n, sh.ci, sh.h, sh.w]));
  const w = leaf(gpu.tensor(f32(d.w), [sh.co, sh.ci, sh.k, sh.k]));
  const b = leaf(gpu.tensor(f32(d.b), [sh.co]));
  const seedGrad = gpu.tensor(f32(d.dy), [sh.n, sh.co, d.oh, d.ow]);
  const y = scope(() => {
    const y = ad.conv2d(x, w, b, { stride: sh.s, padding: sh.p });
    backward(y, seedGrad);
    return y.value;
  });
  const ref = convGradRef(d.x, d.w, d.dy, sh);
  const what = `autodiff ${describe(sh)} seed=${seed}`;
  assertClose(await gpu.read(y), convRef(d.x, d.w, d.b, sh), 1e-5, `forward ${what}`);
  assertClose(await gpu.read(x.grad!), ref.dx, 1e-5, `dx ${what}`);
  assertClose(await gpu.read(w.grad!), ref.dw, 1e-5, `dw ${what}`);
  assertClose(await gpu.read(b.grad!), ref.db, 1e-5, `db ${what}`);
  // a constant input gets no gradient; the weight still does
  const xc = constant(x.value);
  w.zeroGrad();
  scope(() => backward(ad.conv2d(xc, w, null, { stride: sh.s, padding: sh.p }), seedGrad));
  if (xc.grad) throw new Error("a constant input received a gradient");
  assertClose(await gpu.read(w.grad!), ref.dw, 1e-5, `dw without bias ${what}`);
  for (const t of [x.value, w.value, b.value, seedGrad, y]) t.dispose();
  for (const v of [x, w, b]) v.zeroGrad();
});
