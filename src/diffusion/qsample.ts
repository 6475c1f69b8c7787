/**
 * Forward noising q(x_t | x_0): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise (diffusers' add_noise).
 * - t one integer for the whole batch: both coefficients are baked into one elementwise (map) kernel.
 * - t a per-sample f32 [N] tensor (training draws a timestep per image): the coefficients are gathered
 *   on the GPU from a table uploaded once per schedule (shaders/qsample.wgsl), so a training step uploads
 *   and reads back nothing.
 * Differentiable with respect to x_0 (attacks go through the forward noising); the noise is a constant.
 */
import type { Gpu } from "../gpu/context.ts";
import { f32, wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import { keep, type Tensor } from "../tensor.ts";
import { map } from "../ops/map.ts";
import { mulScalar } from "../ops/elementwise.ts";
import { constant, record, type Var } from "../autodiff/var.ts";
import { DEFAULT_SCHEDULE, type Schedule } from "./schedule.ts";
import template from "../../shaders/qsample.wgsl" with { type: "text" };

/** A float constant as a parenthesised WGSL f32 literal (safe after any operator). */
export const lit = (c: number): string => `(${f32(c)})`;

/** sqrt(abar_t) and sqrt(1 - abar_t) in float64. */
export function noisingCoefficients(schedule: Schedule, t: number): [number, number] {
  checkTimestep("qSample", schedule, t);
  const abar = schedule.alphaBar[t];
  return [Math.sqrt(abar), Math.sqrt(1 - abar)];
}

export function checkTimestep(op: string, schedule: Schedule, t: number): void {
  if (!(Number.isInteger(t) && t >= 0 && t < schedule.T)) {
    throw new RangeError(`${op}: timestep ${t} is not an integer in [0, ${schedule.T - 1}]`);
  }
}

// one table per schedule object, kept out of every scope (it lives as long as the schedule)
const tables = new WeakMap<Schedule, Tensor>();

/** [sqrt(abar_k), sqrt(1 - abar_k)] interleaved for k = 0..T-1, uploaded on first use. */
function coefficientTable(gpu: Gpu, schedule: Schedule): Tensor {
  const hit = tables.get(schedule);
  if (hit && !hit.isDisposed && hit.gpu === gpu) return hit;
  const data = new Float32Array(2 * schedule.T);
  schedule.alphaBar.forEach((abar, k) => {
    data[2 * k] = Math.sqrt(abar);
    data[2 * k + 1] = Math.sqrt(1 - abar);
  });
  const table = keep(gpu.tensor(data));
  tables.set(schedule, table);
  return table;
}

function checkPerSample(op: string, x: Tensor, t: Tensor): void {
  if (t.dtype !== "f32" || t.shape.length !== 1 || t.size !== x.shape[0]) {
    throw new ShapeError(op, `per-sample timesteps must be f32 [${x.shape[0]}], got ${t}`);
  }
}

/** The per-sample gather kernel: sqrt(abar[t[n]]) x (+ sqrt(1 - abar[t[n]]) noise). */
function gatherNoising(gpu: Gpu, schedule: Schedule, x: Tensor, t: Tensor, noise: Tensor | null): Tensor {
  const perSample = x.size / x.shape[0];
  const vec4 = perSample % 4 === 0;
  const width = vec4 ? 4 : 1;
  const items = x.size / width, perItem = perSample / width;
  const key = `qsample:${noise ? "noise" : "grad"}:${items}:${perItem}:${width}:${schedule.T}`;
  const kernel = gpu.kernel(
    key,
    () =>
      wgsl(template, { NOISE: noise !== null, VEC4: vec4, ITEMS: items, PER_ITEM: perItem, T: schedule.T }),
  );
  const out = gpu.empty(x.shape);
  const table = coefficientTable(gpu, schedule);
  gpu.dispatch(kernel, noise ? [table, t, x, noise, out] : [table, t, x, out], Math.ceil(items / 64));
  return out;
}

/** x_t from x_0 and noise (raw op, no autodiff). */
export function qSampleRaw(
  gpu: Gpu,
  x0: Tensor,
  t: number | Tensor,
  noise: Tensor,
  schedule: Schedule = DEFAULT_SCHEDULE,
): Tensor {
  if (noise.size !== x0.size) {
    throw new ShapeError("qSample", `noise [${noise.shape}] does not match x0 [${x0.shape}]`);
  }
  if (typeof t === "number") {
    const [sa, sb] = noisingCoefficients(schedule, t);
    return map(gpu, "q_sample", `${lit(sa)} * x0 + ${lit(sb)} * x1`, [x0, noise]);
  }
  checkPerSample("qSample", x0, t);
  return gatherNoising(gpu, schedule, x0, t, noise);
}

/** d loss / d x_0 = sqrt(abar_t) g (per sample when t is a tensor). */
export function qSampleBackward(
  gpu: Gpu,
  g: Tensor,
  t: number | Tensor,
  schedule: Schedule = DEFAULT_SCHEDULE,
): Tensor {
  if (typeof t === "number") return mulScalar(gpu, g, noisingCoefficients(schedule, t)[0]);
  checkPerSample("qSample backward", g, t);
  return gatherNoising(gpu, schedule, g, t, null);
}

/** Differentiable x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise. A per-sample t tensor is recorded as a
 * constant input, so that a scope keeping the result keeps it too (the backward reads it). */
export function qSample(
  x0: Var,
  t: number | Tensor,
  noise: Tensor,
  schedule: Schedule = DEFAULT_SCHEDULE,
): Var {
  const gpu = x0.gpu;
  const out = qSampleRaw(gpu, x0.value, t, noise, schedule);
  const inputs = typeof t === "number" ? [x0] : [x0, constant(t)];
  return record("q_sample", out, inputs, (g) => {
    const dx = qSampleBackward(gpu, g, t, schedule);
    return inputs.length === 1 ? [dx] : [dx, null];
  });
}
