/**
 * Running training statistics kept on the GPU, so that a step never reads back: each step adds its loss
 * and its gradient norm into a small buffer, and `read` fetches both sums with one readback every log
 * interval (then zeroes them). A NaN or infinite loss anywhere in the interval survives in the sum, so
 * checking the sum at each read catches divergence without any per-step readback.
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, Tensor } from "../tensor.ts";
import { addInPlace } from "../ops/map.ts";

/** Floats between the two sums: 256 bytes, the storage-binding offset alignment. */
const SLOT = 64;

export interface StatsReading {
  /** Steps recorded since the previous reading. */
  steps: number;
  meanLoss: number;
  meanGradNorm: number;
}

export class StepStats {
  private readonly buffer: Tensor;
  private readonly lossSum: Tensor;
  private readonly normSum: Tensor;
  private steps = 0;

  constructor(private readonly gpu: Gpu) {
    this.buffer = keep(gpu.zeros([2 * SLOT]));
    this.lossSum = new Tensor(gpu, this.buffer.buffer, [1], "f32", this.buffer.offset, false);
    this.normSum = new Tensor(gpu, this.buffer.buffer, [1], "f32", this.buffer.offset + SLOT * 4, false);
  }

  /** Add one step's loss ([1]) and gradient norm ([1]), in command order. */
  record(loss: Tensor, gradNorm: Tensor): void {
    addInPlace(this.gpu, this.lossSum, loss);
    addInPlace(this.gpu, this.normSum, gradNorm);
    this.steps++;
  }

  get pending(): number {
    return this.steps;
  }

  /** The means since the last reading (one readback), then start a new interval. */
  async read(): Promise<StatsReading> {
    const view = new Tensor(this.gpu, this.buffer.buffer, [SLOT + 1], "f32", this.buffer.offset, false);
    const v = await this.gpu.read(view);
    const steps = this.steps;
    this.gpu.fill(this.buffer, 0);
    this.steps = 0;
    return { steps, meanLoss: v[0] / Math.max(steps, 1), meanGradNorm: v[SLOT] / Math.max(steps, 1) };
  }

  dispose(): void {
    this.buffer.dispose();
  }
}
