/**
 * Host-side layout conversions between our layouts (NCHW images, OIHW conv weights, PyTorch style) and
 * TF.js's native ones (NHWC images, HWIO filters), so both sides of the benchmark get the same numbers.
 */

/** [N,C,H,W] -> [N,H,W,C]. */
export function nchwToNhwc(a: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) out[((b * h + y) * w + x) * c + ch] = a[((b * c + ch) * h + y) * w + x];
      }
    }
  }
  return out;
}

/** [N,H,W,C] -> [N,C,H,W]. */
export function nhwcToNchw(a: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) out[((b * c + ch) * h + y) * w + x] = a[((b * h + y) * w + x) * c + ch];
      }
    }
  }
  return out;
}

/** Conv weights [Cout,Cin,k,k] -> TF.js filter [k,k,Cin,Cout]. */
export function oihwToHwio(a: Float32Array, co: number, ci: number, k: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let o = 0; o < co; o++) {
    for (let i = 0; i < ci; i++) {
      for (let t = 0; t < k * k; t++) out[(t * ci + i) * co + o] = a[(o * ci + i) * k * k + t];
    }
  }
  return out;
}

/** TF.js filter [k,k,Cin,Cout] -> [Cout,Cin,k,k]. */
export function hwioToOihw(a: Float32Array, co: number, ci: number, k: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let o = 0; o < co; o++) {
    for (let i = 0; i < ci; i++) {
      for (let t = 0; t < k * k; t++) out[(o * ci + i) * k * k + t] = a[(t * ci + i) * co + o];
    }
  }
  return out;
}

/** Uniform values in [-scale, scale) from a fixed-seed PRNG (mulberry32): the same data every run. */
export function uniform(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = scale * (2 * (((t ^ (t >>> 14)) >>> 0) / 4294967296) - 1);
  }
  return out;
}

/** ||a - b|| / ||b||. */
export function relDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / (den || 1));
}
