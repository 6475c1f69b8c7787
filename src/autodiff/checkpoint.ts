/**
 * Gradient checkpointing: `checkpoint(fn, inputs)` runs a segment (one UNet call, one reverse step)
 * without keeping its activations, and records one node whose backward recomputes the segment with
 * gradients on and backpropagates through it. Memory for a chain of N checkpointed segments is the N
 * segment inputs plus one segment's activations. The gradient is bit-identical to the plain one when each
 * segment input is used only inside its segment: every kernel is deterministic and random draws are keyed
 * by explicit counters, not by call order. (An input also used outside the segment receives the same
 * gradient summed in another order, equal up to float rounding: wrap the whole step, as the samplers do.)
 *
 * Parameters used inside `fn` (closed over, not passed in `inputs`) receive their gradients during the
 * recomputation, directly into their `grad`.
 */
import { scope, type Tensor } from "../tensor.ts";
import { backward, gradEnabled, leaf, noGrad, record, Var } from "./var.ts";

export function checkpoint(fn: (...xs: Var[]) => Var, inputs: readonly Var[], name = "checkpoint"): Var {
  if (!gradEnabled()) return fn(...inputs);
  const out = scope(() => noGrad(() => fn(...inputs)).value);
  return record(name, out, inputs, (g: Tensor) =>
    scope(() => {
      // recompute with fresh leaves standing in for the inputs, so their gradients can be collected
      const stand = inputs.map((x) => x.requiresGrad ? leaf(x.value) : new Var(x.value));
      const y = fn(...stand);
      if (y.requiresGrad) backward(y, g);
      // leaf gradients are kept out of scopes by the tape; hand them to the outer graph
      return stand.map((s) => s.grad);
    }));
}
