/**
 * The shape tracer: runs an architecture walk (layers.ts) on shapes alone, without a GPU, collecting the
 * declared parameters in order and counting FLOPs. Convention: 2 FLOPs per multiply-accumulate over
 * convolutions, linear layers and matrix products (attention's two products included); normalisation,
 * activations and elementwise ops are not counted. Shape errors surface here exactly as the GPU ops
 * would raise them, so a config can be validated before any allocation.
 */
import { ShapeError } from "../gpu/errors.ts";
import {
  type Conv2dOptions,
  type Init,
  type MatmulFlags,
  type NetOps,
  paramCount,
  type ParamDecl,
} from "./layers.ts";

/** A traced activation: its shape only. */
export interface Sym {
  readonly shape: readonly number[];
}

export type FlopKind = "conv" | "linear" | "matmul" | "attention";

export interface TraceReport {
  /** Parameters in declaration order. */
  decls: ParamDecl[];
  params: number;
  /** Total FLOPs of one forward of the traced batch. */
  flops: number;
  byKind: Record<FlopKind, number>;
  output: readonly number[];
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const sym = (shape: readonly number[]): Sym => ({ shape: [...shape] });

export class ShapeTracer implements NetOps<Sym> {
  readonly decls: ParamDecl[] = [];
  readonly byKind: Record<FlopKind, number> = { conv: 0, linear: 0, matmul: 0, attention: 0 };
  private names = new Set<string>();

  get flops(): number {
    return Object.values(this.byKind).reduce((a, b) => a + b, 0);
  }

  param(name: string, shape: readonly number[], init: Init): Sym {
    if (this.names.has(name)) throw new Error(`parameter ${name} declared twice`);
    this.names.add(name);
    this.decls.push({ name, shape: [...shape], init });
    return sym(shape);
  }

  shape = (x: Sym) => x.shape;

  conv2d(x: Sym, w: Sym, b: Sym | null, opts: Conv2dOptions): Sym {
    const [n, cin, h, wd] = x.shape;
    const [cout, wcin, k, k2] = w.shape;
    const s = opts.stride ?? 1, p = opts.padding ?? 0;
    if (x.shape.length !== 4 || w.shape.length !== 4 || k !== k2 || wcin !== cin || (k !== 1 && k !== 3)) {
      throw new ShapeError("conv2d", `input [${x.shape}] and weight [${w.shape}] do not fit`);
    }
    if (b && (b.shape.length !== 1 || b.shape[0] !== cout)) {
      throw new ShapeError("conv2d", `bias [${b.shape}]`);
    }
    const oh = Math.floor((h + 2 * p - k) / s) + 1, ow = Math.floor((wd + 2 * p - k) / s) + 1;
    if (oh < 1 || ow < 1) throw new ShapeError("conv2d", `input [${x.shape}] is smaller than the kernel`);
    this.byKind.conv += 2 * n * cout * oh * ow * cin * k * k;
    return sym([n, cout, oh, ow]);
  }

  linear(x: Sym, w: Sym, b: Sym | null): Sym {
    const inF = x.shape[x.shape.length - 1], [outF, wIn] = w.shape;
    if (w.shape.length !== 2 || wIn !== inF) {
      throw new ShapeError("linear", `weight [${w.shape}] does not fit input [${x.shape}]`);
    }
    if (b && size(b.shape) !== outF) throw new ShapeError("linear", `bias [${b.shape}] for ${outF} outputs`);
    this.byKind.linear += 2 * (size(x.shape) / inF) * inF * outF;
    return sym([...x.shape.slice(0, -1), outF]);
  }

  matmul(a: Sym, b: Sym, opts: MatmulFlags): Sym {
    const dims = (s: readonly number[]) => s.length === 3 ? [s[0], s[1], s[2]] : [0, s[0], s[1]];
    const [ba, ra, ca] = dims(a.shape), [bb, rb, cb] = dims(b.shape);
    const [m, k] = opts.transA ? [ca, ra] : [ra, ca];
    const [k2, n] = opts.transB ? [cb, rb] : [rb, cb];
    if (k !== k2 || (ba && bb && ba !== bb)) {
      throw new ShapeError("matmul", `a [${a.shape}] and b [${b.shape}] do not fit`);
    }
    const batch = ba || bb;
    this.byKind.matmul += 2 * Math.max(batch, 1) * m * n * k;
    return sym(batch ? [batch, m, n] : [m, n]);
  }

  groupNorm(x: Sym, gamma: Sym, beta: Sym, groups: number): Sym {
    const c = x.shape[1];
    if (c % groups || size(gamma.shape) !== c || size(beta.shape) !== c) {
      throw new ShapeError("groupNorm", `[${x.shape}] with ${groups} groups, gamma [${gamma.shape}]`);
    }
    return x;
  }

  attention(q: Sym, k: Sym, v: Sym): Sym {
    const [b, l, d] = q.shape;
    if (q.shape.length !== 3 || k.shape.join() !== q.shape.join() || v.shape.join() !== q.shape.join()) {
      throw new ShapeError("attention", `q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
    }
    this.byKind.attention += 2 * 2 * b * l * l * d; // q k^T and probs v
    return q;
  }

  add(a: Sym, b: Sym): Sym {
    if (a.shape.length !== b.shape.length) throw new ShapeError("add", `[${a.shape}] + [${b.shape}]`);
    return sym(a.shape.map((n, d) => {
      const m = b.shape[d];
      if (n !== m && n !== 1 && m !== 1) throw new ShapeError("add", `[${a.shape}] + [${b.shape}]`);
      return Math.max(n, m);
    }));
  }

  silu = (x: Sym) => x;
  relu = (x: Sym) => x;
  dropout = (x: Sym) => x;

  reshape(x: Sym, shape: readonly number[]): Sym {
    if (size(shape) !== size(x.shape)) throw new ShapeError("reshape", `[${x.shape}] -> [${shape}]`);
    return sym(shape);
  }

  concatChannels(xs: readonly Sym[]): Sym {
    const [n, , ...rest] = xs[0].shape;
    for (const x of xs) {
      if (x.shape[0] !== n || x.shape.slice(2).join() !== rest.join()) {
        throw new ShapeError("concatChannels", `[${x.shape}] does not match [${xs[0].shape}]`);
      }
    }
    return sym([n, xs.reduce((c, x) => c + x.shape[1], 0), ...rest]);
  }

  padBottomRight(x: Sym): Sym {
    const [n, c, h, w] = x.shape;
    return sym([n, c, h + 1, w + 1]);
  }

  upsampleNearest2x(x: Sym): Sym {
    const [n, c, h, w] = x.shape;
    return sym([n, c, 2 * h, 2 * w]);
  }

  meanSpatial(x: Sym): Sym {
    if (x.shape.length !== 4) throw new ShapeError("meanSpatial", `expected NCHW, got [${x.shape}]`);
    return sym(x.shape.slice(0, 2));
  }
}

/** Trace a walk on inputs of the given shapes. */
export function trace(
  walk: (L: ShapeTracer, ...inputs: Sym[]) => Sym,
  ...inputShapes: (readonly number[])[]
): TraceReport {
  const t = new ShapeTracer();
  const out = walk(t, ...inputShapes.map(sym));
  return {
    decls: t.decls,
    params: paramCount(t.decls),
    flops: t.flops,
    byKind: { ...t.byKind },
    output: out.shape,
  };
}

/** One line: parameter count and MFLOPs per image (the trace must be of batch size 1). */
export function formatReport(name: string, r: TraceReport): string {
  const m = (x: number) => (x / 1e6).toFixed(2);
  const kinds = (Object.entries(r.byKind) as [FlopKind, number][])
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${m(v)}`)
    .join(", ");
  return `${name}: ${r.params.toLocaleString("en-US")} parameters, ${m(r.flops)} MFLOP per image (${kinds})`;
}
