import { assertClose, f32, finiteDiff, freshSeed, randArray, testGpu } from "./util.ts";
import {
  avgPool2d,
  avgPool2dBackward,
  upsampleNearest2x,
  upsampleNearest2xBackward,
} from "../src/ops/resample.ts";
import * as ad from "../src/autodiff/resample.ts";
import { backward, leaf } from "../src/autodiff/var.ts";
import { scope } from "../src/tensor.ts";

const gpu = await testGpu();
type Shape = [number, number, number, number];

// ---------------------------------------------------------------- float64 references

function upsampleRef(x: ArrayLike<number>, [n, c, h, w]: Shape): Float64Array {
  const y = new Float64Array(n * c * 4 * h * w);
  for (let p = 0; p < n * c; p++) {
    for (let yy = 0; yy < 2 * h; yy++) {
      for (let xx = 0; xx < 2 * w; xx++) {
        y[(p * 2 * h + yy) * 2 * w + xx] = x[(p * h + (yy >> 1)) * w + (xx >> 1)];
      }
    }
  }
  return y;
}

function poolRef(x: ArrayLike<number>, [n, c, h, w]: Shape, k: number): Float64Array {
  const oh = Math.floor(h / k), ow = Math.floor(w / k);
  const y = new Float64Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        let s = 0;
        for (let dy = 0; dy < k; dy++) {
          for (let dx = 0; dx < k; dx++) s += x[(p * h + oy * k + dy) * w + ox * k + dx];
        }
        y[(p * oh + oy) * ow + ox] = s / (k * k);
      }
    }
  }
  return y;
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

// ---------------------------------------------------------------- tests

Deno.test("upsampleNearest2x: forward and backward match float64 / finite differences", async () => {
  for (const shape of [[2, 3, 7, 5], [1, 4, 1, 9], [3, 2, 6, 8]] as Shape[]) {
    const seed = freshSeed();
    const x = randArray(size(shape), seed), dy = randArray(4 * size(shape), seed + 1);
    const [y, dx] = scope(() => {
      const y = upsampleNearest2x(gpu, gpu.tensor(f32(x), shape));
      const dx = upsampleNearest2xBackward(gpu, gpu.tensor(f32(dy), y.shape));
      return [y, dx];
    });
    const what = `upsample [${shape}] seed=${seed}`;
    if (y.shape.join() !== [shape[0], shape[1], 2 * shape[2], 2 * shape[3]].join()) throw new Error(what);
    assertClose(await gpu.read(y), upsampleRef(x, shape), 1e-6, `forward ${what}`);
    assertClose(
      await gpu.read(dx),
      finiteDiff((v) => upsampleRef(v, shape), x, dy),
      1e-5,
      `backward ${what}`,
    );
    y.dispose();
    dx.dispose();
  }
});

Deno.test("avgPool2d: forward and backward match float64 / finite differences (odd sizes, k 2 and 3)", async () => {
  const cases: [Shape, number][] = [[[2, 3, 7, 5], 2], [[1, 2, 9, 7], 3], [[2, 2, 8, 6], 2], [
    [1, 1, 5, 4],
    1,
  ]];
  for (const [shape, k] of cases) {
    const seed = freshSeed();
    const oh = Math.floor(shape[2] / k), ow = Math.floor(shape[3] / k);
    const x = randArray(size(shape), seed), dy = randArray(shape[0] * shape[1] * oh * ow, seed + 1);
    const [y, dx] = scope(() => {
      const y = avgPool2d(gpu, gpu.tensor(f32(x), shape), k);
      return [y, avgPool2dBackward(gpu, gpu.tensor(f32(dy), y.shape), shape, k)];
    });
    const what = `avgPool2d [${shape}] k=${k} seed=${seed}`;
    if (y.shape.join() !== [shape[0], shape[1], oh, ow].join()) {
      throw new Error(`${what}: shape [${y.shape}]`);
    }
    assertClose(await gpu.read(y), poolRef(x, shape, k), 1e-6, `forward ${what}`);
    assertClose(await gpu.read(dx), finiteDiff((v) => poolRef(v, shape, k), x, dy), 1e-5, `backward ${what}`);
    y.dispose();
    dx.dispose();
  }
});

Deno.test("resample autodiff: pool then upsample, gradient through backward", async () => {
  const shape: Shape = [2, 3, 6, 10];
  const seed = freshSeed();
  const x = randArray(size(shape), seed), dy = randArray(size(shape), seed + 1);
  const f = (v: Float64Array) => upsampleRef(poolRef(v, shape, 2), [2, 3, 3, 5]);
  const xv = leaf(gpu.tensor(f32(x), shape));
  const g = gpu.tensor(f32(dy), shape);
  const y = scope(() => {
    const y = ad.upsampleNearest2x(ad.avgPool2d(xv, 2));
    backward(y, g);
    return y.value;
  });
  const what = `pool+upsample seed=${seed}`;
  assertClose(await gpu.read(y), f(x), 1e-6, `forward ${what}`);
  assertClose(await gpu.read(xv.grad!), finiteDiff(f, x, dy), 1e-5, `grad ${what}`);
  for (const t of [y, g, xv.value]) t.dispose();
  xv.zeroGrad();
});
