/**
 * Reverse-mode autodiff in the micrograd style: every differentiable op returns a `Var` that remembers
 * its inputs and a backward closure; `backward(loss)` walks the graph in reverse topological order and
 * accumulates exact gradients. Gradients flow to inputs as well as parameters (attacks need d loss / d x).
 *
 * - `noGrad(fn)` records nothing (inference, CGPO's frozen parts).
 * - Leaf gradients accumulate across `backward` calls (gradient accumulation) until `zeroGrad`.
 * - `checkpoint(fn, inputs)` drops a segment's activations in the forward pass and recomputes them in the
 *   backward pass (checkpoint.ts).
 * Memory: intermediate gradients are released as soon as they have been propagated; everything else
 * follows the tensor scopes (tensor.ts).
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, type Tensor } from "../tensor.ts";
import { addInPlace } from "../ops/map.ts";

export interface Node {
  readonly name: string;
  readonly inputs: readonly Var[];
  /** Given d loss / d output, return d loss / d input for each input (null where not needed). */
  readonly backward: (g: Tensor) => readonly (Tensor | null)[];
}

export class Var {
  /** Accumulated gradient of a leaf (set by `backward`); intermediate gradients are not kept. */
  grad: Tensor | null = null;

  constructor(
    public value: Tensor,
    readonly requiresGrad = false,
    readonly node: Node | null = null,
    public name = "",
  ) {}

  get shape(): readonly number[] {
    return this.value.shape;
  }

  get gpu(): Gpu {
    return this.value.gpu;
  }

  get isLeaf(): boolean {
    return this.node === null;
  }

  /** Release the accumulated gradient (unless it is a view into a flat gradient buffer, then zero it). */
  zeroGrad(): void {
    if (!this.grad) return;
    if (this.fixedGrad) this.gpu.fill(this.grad, 0);
    else {
      this.grad.dispose();
      this.grad = null;
    }
  }

  /** A leaf whose gradient is accumulated into a preassigned tensor (a view into a flat gradient buffer). */
  fixedGrad = false;
}

/** A leaf that wants gradients (an input being attacked, or a parameter). */
export function leaf(value: Tensor, name = ""): Var {
  return new Var(value, true, null, name);
}

/** A leaf without gradient (data, labels, frozen weights). */
export function constant(value: Tensor, name = ""): Var {
  return new Var(value, false, null, name);
}

let noGradDepth = 0;

export function gradEnabled(): boolean {
  return noGradDepth === 0;
}

/** Run `fn` without recording the graph. */
export function noGrad<T>(fn: () => T): T {
  noGradDepth++;
  try {
    return fn();
  } finally {
    noGradDepth--;
  }
}

/** Wrap an op's output: records a node when gradients are enabled and some input requires them. */
export function record(
  name: string,
  value: Tensor,
  inputs: readonly Var[],
  backward: (g: Tensor) => readonly (Tensor | null)[],
): Var {
  const needs = noGradDepth === 0 && inputs.some((v) => v.requiresGrad);
  return new Var(value, needs, needs ? { name, inputs, backward } : null, name);
}

function topoOrder(root: Var): Var[] {
  const order: Var[] = [];
  const seen = new Set<Var>();
  // iterative DFS: graphs through 100 reverse steps are deep
  const stack: [Var, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [v, k] = top;
    const inputs = v.node?.inputs ?? [];
    if (k < inputs.length) {
      top[1]++;
      const u = inputs[k];
      if (u.requiresGrad && !seen.has(u)) {
        seen.add(u);
        stack.push([u, 0]);
      }
    } else {
      stack.pop();
      order.push(v);
    }
  }
  return order;
}

/**
 * Accumulate d root / d leaf into every reachable leaf's `grad`. `seed` is d loss / d root (ones when
 * omitted, for a scalar or to sum the root). The caller keeps ownership of `seed`.
 */
export function backward(root: Var, seed?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error("backward: the root does not depend on anything that requires grad");
  }
  const gpu = root.gpu;
  const start = seed ?? (() => {
    const t = gpu.empty(root.shape);
    gpu.fill(t, 1);
    return t;
  })();
  if (start.size !== root.value.size) {
    throw new RangeError(`backward: seed of shape [${start.shape}] for a root of shape [${root.shape}]`);
  }
  if (root.isLeaf) {
    accumulateLeaf(root, start, !seed);
    return;
  }
  const grads = new Map<Var, Tensor>([[root, start]]);
  const order = topoOrder(root);
  for (let n = order.length - 1; n >= 0; n--) {
    const v = order[n];
    const g = grads.get(v);
    if (!v.node || !g) continue;
    grads.delete(v);
    const gs = v.node.backward(g);
    const handedOut = new Set<GPUBuffer>([g.buffer]);
    v.node.inputs.forEach((u, i) => {
      let gi = gs[i];
      if (!u.requiresGrad || !gi) return;
      if (gi.size !== u.value.size) {
        throw new Error(
          `backward of ${v.node!.name}: gradient for input ${i} has shape [${gi.shape}], input [${u.shape}]`,
        );
      }
      if (handedOut.has(gi.buffer)) {
        // an alias of the incoming gradient or of one already handed out: give this input its own copy
        const c = gpu.empty(u.shape);
        gpu.copy(gi, c);
        gi = c;
      }
      handedOut.add(gi.buffer);
      if (u.isLeaf) accumulateLeaf(u, gi, true);
      else {
        const prev = grads.get(u);
        if (prev) {
          addInPlace(gpu, prev, gi);
          gi.dispose();
        } else grads.set(u, gi);
      }
    });
    if (g !== seed) g.dispose();
  }
}

/** Add g into a leaf's gradient, or make it the gradient. `owned`: the tape may free or keep g. */
function accumulateLeaf(u: Var, g: Tensor, owned: boolean): void {
  const gpu = u.gpu;
  if (u.grad) {
    addInPlace(gpu, u.grad, g);
    if (owned) g.dispose();
    return;
  }
  let t = g;
  if (!owned || g.shape.join() !== u.shape.join()) {
    t = gpu.empty(u.shape);
    gpu.copy(g, t);
    if (owned) g.dispose();
  }
  u.grad = keep(t);
}
