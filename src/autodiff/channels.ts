/** Differentiable channel concat and slice: each one's backward is the other's raw op. */
import * as raw from "../ops/channels.ts";
import { record, type Var } from "./var.ts";

/** Concatenate along channels (UNet skip connections); the gradient of each input is a slice. */
export function concatChannels(xs: readonly Var[]): Var {
  const gpu = xs[0].gpu;
  const out = raw.concatChannels(gpu, xs.map((x) => x.value));
  return record("concatChannels", out, xs, (g) => {
    let start = 0;
    return xs.map((x) => {
      const c = x.shape[1];
      const gi = x.requiresGrad ? raw.sliceChannels(gpu, g, start, c) : null;
      start += c;
      return gi;
    });
  });
}

/** Channels [start, start + count); the gradient is zero outside them. */
export function sliceChannels(x: Var, start: number, count: number): Var {
  const gpu = x.gpu;
  const out = raw.sliceChannels(gpu, x.value, start, count);
  return record("sliceChannels", out, [x], (g) => [raw.padChannels(gpu, g, start, x.shape[1])]);
}
