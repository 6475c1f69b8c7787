/**
 * Image grids as PNG (fast-png): a batch of images [N, C, H, W] in [0, 1] laid out row by row with a
 * 1-pixel gap, grey for one channel and RGB for three. Values are clamped; NaN becomes black, so a broken
 * image is visible instead of an exception.
 */
import { encode } from "fast-png";
import { writeFileAtomic } from "./safetensors.ts";

export interface GridOptions {
  /** Images per row (default: ceil(sqrt(N))). */
  cols?: number;
  /** Gap between images in pixels (default 1). */
  gap?: number;
  /** Pixels per image pixel (default 1). */
  scale?: number;
}

/** The PNG bytes of a grid of `images` (flat NCHW in [0, 1]) of shape [n, c, h, w]. */
export function gridPng(
  images: Float32Array,
  shape: readonly [number, number, number, number],
  options: GridOptions = {},
): Uint8Array {
  const [n, c, h, w] = shape;
  if (c !== 1 && c !== 3) throw new RangeError(`gridPng: 1 or 3 channels, got ${c}`);
  if (images.length !== n * c * h * w) {
    throw new RangeError(`gridPng: ${images.length} values for [${shape}]`);
  }
  const cols = Math.max(1, options.cols ?? Math.ceil(Math.sqrt(n)));
  const rows = Math.max(1, Math.ceil(n / cols));
  const gap = options.gap ?? 1, s = options.scale ?? 1;
  const cw = w * s + gap, ch = h * s + gap;
  const width = cols * cw + gap, height = rows * ch + gap;
  const data = new Uint8Array(width * height * c);
  const byte = (v: number) => (Number.isNaN(v) ? 0 : Math.round(Math.min(1, Math.max(0, v)) * 255));
  for (let i = 0; i < n; i++) {
    const ox = gap + (i % cols) * cw, oy = gap + Math.floor(i / cols) * ch;
    for (let y = 0; y < h * s; y++) {
      for (let x = 0; x < w * s; x++) {
        const src = (yy: number, xx: number, k: number) => images[((i * c + k) * h + yy) * w + xx];
        const dst = ((oy + y) * width + ox + x) * c;
        for (let k = 0; k < c; k++) data[dst + k] = byte(src(Math.floor(y / s), Math.floor(x / s), k));
      }
    }
  }
  return encode({ width, height, data, channels: c, depth: 8 });
}

/** Write a grid PNG atomically. */
export async function writeGridPng(
  path: string,
  images: Float32Array,
  shape: readonly [number, number, number, number],
  options: GridOptions = {},
): Promise<void> {
  await writeFileAtomic(path, gridPng(images, shape, options));
}
