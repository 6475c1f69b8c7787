/**
 * ADDT's one kernel (shaders/addt.wgsl): gather per-sample rows of a per-timestep table on the GPU, so that
 * the coefficients of a training step come from its sampled timesteps without a readback or an upload.
 */
import type { Gpu } from "../gpu/context.ts";
import { wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/addt.wgsl" with { type: "text" };

/** out[n, :] = table[t[n], :] for a table [T, cols] and f32 timesteps t [N] (rounded, clamped into the
 * table). */
export function timestepRows(gpu: Gpu, table: Tensor, t: Tensor): Tensor {
  if (table.shape.length !== 2 || table.dtype !== "f32") {
    throw new ShapeError("timestepRows", `table must be f32 [T, cols], got ${table}`);
  }
  if (t.shape.length !== 1 || t.dtype !== "f32") {
    throw new ShapeError("timestepRows", `timesteps must be f32 [N], got ${t}`);
  }
  const [T, cols] = table.shape, total = t.size * cols;
  const kernel = gpu.kernel(
    `addt:rows:${total}:${cols}:${T}`,
    () => wgsl(template, { TOTAL: total, COLS: cols, T }),
  );
  const out = gpu.empty([t.size, cols]);
  gpu.dispatch(kernel, [table, t, out], Math.ceil(total / 64));
  return out;
}
