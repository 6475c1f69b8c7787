/** Test helpers: the poisoned test device, fresh random inputs, float64 comparisons, finite differences. */
import { getGpu, type Gpu } from "../src/gpu/context.ts";
import { mulberry32 } from "../src/data/random.ts";

/** The process's GPU with output poisoning on: every new tensor starts as NaN. */
export async function testGpu(): Promise<Gpu> {
  const gpu = await getGpu();
  gpu.poison = true;
  return gpu;
}

/**
 * A fresh seed per call, printed by failing assertions. To replay a failure, run the one test with
 * ADDT_TEST_SEED set to the printed seed: every freshSeed() call then returns it.
 */
export function freshSeed(): number {
  const pinned = Deno.env.get("ADDT_TEST_SEED");
  if (pinned !== undefined) {
    const s = Number(pinned);
    if (!Number.isInteger(s) || s < 0 || s > 0xffffffff) {
      throw new Error(`ADDT_TEST_SEED=${pinned}: expected an integer seed in [0, 2^32)`);
    }
    return s;
  }
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** Throw `what` unless `cond` holds (narrows `cond` for the type checker). */
export function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(what);
}

/** Deterministic host PRNG (mulberry32) for test inputs: uniform in [0, 1). */
export function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

/** n uniform values in [lo, hi), as float32-representable float64s. */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + (hi - lo) * r());
  return out;
}

export function randn(n: number, seed: number): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - r(), v = r();
    out[i] = Math.fround(Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  return out;
}

/** ||out - ref|| / ||ref||; NaN anywhere in `out` gives Infinity. */
export function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`length ${out.length} vs reference ${ref.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) return Infinity;
    num += (out[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

export function assertClose(out: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(out, ref);
  if (!(e < tol)) throw new Error(`${what}: relative error ${e.toExponential(3)} >= ${tol}`);
}

/**
 * Central finite differences of L(x) = sum(dy * f(x)) with respect to x, in float64.
 * `f` is the float64 reference forward.
 */
export function finiteDiff(
  f: (x: Float64Array) => ArrayLike<number>,
  x: Float64Array,
  dy: ArrayLike<number>,
  h = 1e-6,
): Float64Array {
  const g = new Float64Array(x.length);
  const xp = Float64Array.from(x);
  const dot = (y: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < y.length; i++) s += dy[i] * y[i];
    return s;
  };
  for (let i = 0; i < x.length; i++) {
    xp[i] = x[i] + h;
    const a = dot(f(xp));
    xp[i] = x[i] - h;
    const b = dot(f(xp));
    xp[i] = x[i];
    g[i] = (a - b) / (2 * h);
  }
  return g;
}

export const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

/** The repository root (the CLI's working folder in tests). */
export const repoRoot = new URL("..", import.meta.url).pathname;

/** What a CLI run printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `deno run -A tasks/addt.ts ...args` from the repository root (NO_COLOR, plus `env`). */
export async function runAddt(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tasks/addt.ts", ...args],
    cwd: repoRoot,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * Records `steps` training steps (no await in between) and checks the hot-loop rules: no readback, exactly
 * one upload a step (the batch), and no buffer allocated or kept alive after the first step.
 */
export function checkSteadySteps(
  gpu: Gpu,
  steps: number,
  record: (step: number) => void,
  what: string,
): void {
  // step 0 may allocate (first use), step 1 is the baseline, so at least one more step is compared with it
  if (!(Number.isInteger(steps) && steps >= 3)) {
    throw new Error(`checkSteadySteps: ${steps} steps, need >= 3`);
  }
  let uploads = 0;
  const upload = gpu.upload.bind(gpu);
  gpu.upload = (t, d) => (uploads++, upload(t, d));
  try {
    const marks: { reads: number; uploads: number; allocated: number; live: number }[] = [];
    for (let step = 0; step < steps; step++) {
      record(step);
      marks.push({
        reads: gpu.stats.readbacks,
        uploads,
        allocated: gpu.pool.allocatedBytes,
        live: gpu.pool.liveBytes,
      });
    }
    for (let k = 1; k < steps; k++) {
      if (marks[k].reads !== marks[0].reads) throw new Error(`a ${what} step read back`);
      if (marks[k].uploads - marks[k - 1].uploads !== 1) {
        throw new Error(`${what}: ${marks[k].uploads - marks[k - 1].uploads} uploads in a step`);
      }
    }
    const last = marks[steps - 1];
    if (last.allocated !== marks[1].allocated || last.live !== marks[1].live) {
      throw new Error(`steady-state ${what} steps allocate: ${JSON.stringify(marks)}`);
    }
  } finally {
    gpu.upload = upload;
  }
}
