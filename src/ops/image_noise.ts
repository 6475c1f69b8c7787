/**
 * Per-image standard normal noise: a [N, ...] draw whose row n is exactly the library's
 * `normal(gpu, [per], key', site)` with key' = key whose counter word is key[3] + n (ops/random.ts). With
 * the key's counter set to the batch's first dataset index, each image's noise depends on (seed, stream,
 * image index, site) only, not on the batch it falls in: an evaluation can stop and resume with other
 * batch boundaries and draw the same noise. One dispatch per draw; the key is a runtime input, so batches
 * compile nothing new (one kernel per batch size, per-image size and site).
 */
import type { Gpu } from "../gpu/context.ts";
import { wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import philoxSource from "../../shaders/philox.wgsl" with { type: "text" };
import template from "../../shaders/image_noise.wgsl" with { type: "text" };

/** The Philox and Box-Muller functions of philox.wgsl (between its first helper and its entry point). */
function philoxFunctions(): string {
  const start = philoxSource.indexOf("fn mulhi"), end = philoxSource.lastIndexOf("@compute");
  if (start < 0 || end < start) {
    throw new Error("image_noise: shaders/philox.wgsl no longer has 'fn mulhi' ... '@compute' to include");
  }
  return philoxSource.slice(start, end);
}

/** Normal noise of `shape` [N, ...]: row n from the key with counter key[3] + n, at `site`. */
export function perImageNormal(gpu: Gpu, shape: readonly number[], key: Tensor, site = 0): Tensor {
  if (key.dtype !== "u32" || key.size !== 4) {
    throw new ShapeError("perImageNormal", `key must be a u32[4] tensor, got ${key}`);
  }
  if (!Number.isInteger(site) || site < 0 || site >= 2 ** 32) {
    throw new RangeError(`perImageNormal: site ${site}`);
  }
  const out = gpu.empty(shape);
  const images = shape[0], per = out.size / images, blocks = Math.ceil(per / 4);
  const k = gpu.kernel(
    `image_noise:${images}:${per}:${site}`,
    () => wgsl(template, { PHILOX: philoxFunctions(), IMAGES: images, PER: per, BLOCKS: blocks, SITE: site }),
  );
  gpu.dispatch(k, [key, out], Math.ceil(images * blocks / 64));
  return out;
}
