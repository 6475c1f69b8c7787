/**
 * 2-D convolution (NCHW, weights [Cout, Cin, k, k], k in {1, 3}, stride 1 or 2, any small padding) as
 * implicit GEMMs from one WGSL template (shaders/conv2d.wgsl):
 * - forward: [Cout] x [Cin*k*k] x [N*Ho*Wo];
 * - input gradient: a transposed conv, gathered per input pixel; for stride 2 it runs once per pixel
 *   parity class, each of which sees a fixed subset of the taps, so no zeros are ever inserted;
 * - weight gradient: [Cout] x [N*Ho*Wo] x [Cin*k*k], the reduction split into chunks whose partial sums a
 *   second small pass adds (there are no float atomics), so that small layers still fill the threads.
 * Image operands are first copied into a zero-padded, vec4-aligned layout (one cheap pass, skipped when
 * the image already fits) so that the kernels read aligned vec4s without bounds masks. Kernels come in two variants chosen by the adapter:
 * register tiles without barriers for software adapters, shared-memory tiles for real GPUs.
 */
import type { Gpu } from "../gpu/context.ts";
import { type Consts, wgsl } from "../gpu/template.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Tensor } from "../tensor.ts";
import template from "../../shaders/conv2d.wgsl" with { type: "text" };

export interface Conv2dOptions {
  stride?: 1 | 2;
  padding?: number;
}

export type ConvVariant = "register" | "tiled";
let forcedVariant: ConvVariant | null = null;

/** Tests and benchmarks: use one variant whatever the adapter (null: choose by adapter again). */
export function forceConv2dVariant(v: ConvVariant | null): void {
  forcedVariant = v;
}

function variantFor(gpu: Gpu): ConvVariant {
  return forcedVariant ?? (gpu.adapter.isSoftware ? "register" : "tiled");
}

// ---------------------------------------------------------------- geometry

interface Geometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  k: number;
  s: number;
  p: number;
  oh: number;
  ow: number;
}

export function conv2dOutputSize(size: number, k: number, stride: number, padding: number): number {
  return Math.floor((size + 2 * padding - k) / stride) + 1;
}

function geometry(
  op: string,
  xShape: readonly number[],
  wShape: readonly number[],
  opts: Conv2dOptions,
): Geometry {
  const s = opts.stride ?? 1, p = opts.padding ?? 0;
  if (xShape.length !== 4) throw new ShapeError(op, `input must be [N,C,H,W], got [${xShape}]`);
  if (wShape.length !== 4 || wShape[2] !== wShape[3] || (wShape[2] !== 1 && wShape[2] !== 3)) {
    throw new ShapeError(op, `weight must be [Cout,Cin,k,k] with k in {1,3}, got [${wShape}]`);
  }
  if (s !== 1 && s !== 2) throw new ShapeError(op, `stride must be 1 or 2, got ${s}`);
  if (!Number.isInteger(p) || p < 0 || p > 4) throw new ShapeError(op, `padding must be 0..4, got ${p}`);
  const [n, cin, h, w] = xShape;
  const [cout, wcin, k] = wShape;
  if (wcin !== cin) throw new ShapeError(op, `input has ${cin} channels but the weight expects ${wcin}`);
  const oh = conv2dOutputSize(h, k, s, p), ow = conv2dOutputSize(w, k, s, p);
  if (oh < 1 || ow < 1) throw new ShapeError(op, `input [${xShape}] is smaller than the kernel`);
  return { n, cin, h, w, cout, k, s, p, oh, ow };
}

/** A 1x1 stride-1 unpadded conv is a GEMM over flattened pixels: view images as one row of H*W. */
function flattened(g: Geometry): Geometry {
  if (g.k !== 1 || g.s !== 1 || g.p !== 0 || g.h === 1) return g;
  return { ...g, h: 1, w: g.h * g.w, oh: 1, ow: g.oh * g.ow };
}

// ---------------------------------------------------------------- kernels and padding

function compile(gpu: Gpu, mode: string, consts: Consts, code?: () => Consts) {
  const key = `conv2d:${mode}:` + Object.entries(consts).map(([k, v]) => `${k}=${v}`).join(",");
  return gpu.kernel(key, () => wgsl(template, { ...consts, [mode]: true, ...(code ? code() : {}) }));
}

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;

/** A zero-padded, vec4-aligned copy of `planes` images of h x w, or the input itself if it already fits. */
interface Padded {
  t: Tensor;
  hp: number;
  wp: number;
  owned: boolean;
}

function padImages(
  gpu: Gpu,
  x: Tensor,
  planes: number,
  h: number,
  w: number,
  pt: number,
  pl: number,
  hNeed: number,
  wNeed: number,
): Padded {
  if (pt === 0 && pl === 0 && w % 4 === 0 && hNeed <= h && wNeed <= w) {
    return { t: x, hp: h, wp: w, owned: false };
  }
  const hp = Math.max(hNeed, 1), wp = roundUp(Math.max(wNeed, 4), 4);
  const t = gpu.empty([planes, hp, wp]);
  const total4 = planes * hp * wp / 4;
  const k = compile(gpu, "PAD", { TOTAL4: total4, WP4: wp / 4, HP: hp, H: h, W: w, PT: pt, PL: pl });
  gpu.dispatch(k, [x, t], Math.ceil(total4 / 64));
  return { t, hp, wp, owned: true };
}

// ---------------------------------------------------------------- gather convolutions

/** One output grid of a gather conv (see shaders/conv2d.wgsl, GATHER_*). Input coordinates unpadded. */
interface Grid {
  gh: number;
  gw: number;
  oy0: number;
  osy: number;
  ox0: number;
  osx: number;
  /** input row of grid row a under tap t: a*s + by + t (columns alike) */
  by: number;
  bx: number;
  ty: number;
  tx: number;
  ky0: number;
  kys: number;
  kx0: number;
  kxs: number;
}

interface GatherConv {
  /** shape of the output tensor (the grids address it as [nb, oc, outH, outW]) */
  outShape: readonly number[];
  nb: number;
  ic: number;
  inH: number;
  inW: number;
  oc: number;
  outH: number;
  outW: number;
  s: number;
  kw: number;
  wso: number;
  wsi: number;
  grids: Grid[];
}

/** Register tile of the software variant: COT output channels x RT rows x PXT columns per invocation. */
interface RegTile {
  cot: number;
  rt: number;
  pxt: number;
}

/**
 * Bigger tiles amortise loads better until spills dominate; measured on llvmpipe (GFLOP/s per two cores,
 * 16x64x32x32 3x3): 8x1x16 21, 8x1x32 27, 16x1x16 24, 8x2x8 18; at 14x14: 8x1x14 22, 8x2x14 28; at 7x7:
 * 8x2x7 15, 8x4x7 23. So: 8 output channels and about 32 pixels, whole rows when they are short.
 * Below SMALL_WORK multiply-adds the dispatch costs more than the arithmetic: smaller tiles then compile
 * several times faster (LLVM's time grows with the unrolled tile).
 */
const SMALL_WORK = 1 << 20;

function regTile(oc: number, gh: number, gw: number, s: number, work: number): RegTile {
  const small = work < SMALL_WORK;
  const cot = Math.min(small ? 4 : 8, oc), px = small ? 8 : 32;
  // columns: one tile per row when short, else tiles that keep b0*s a multiple of 4 (aligned windows)
  const pxt = gw <= px ? gw : roundUp(Math.ceil(gw / Math.ceil(gw / px)), s === 2 ? 2 : 4);
  // rows: about px pixels per tile, preferring a row count that wastes little of the last tile
  let rt = 1, best = Infinity;
  const hi = Math.max(1, Math.min(gh, Math.floor(px / pxt))),
    lo = Math.max(1, Math.min(hi, Math.ceil(px / 2 / pxt)));
  for (let r = hi; r >= lo; r--) {
    const waste = (Math.ceil(gh / r) * r - gh) / (Math.ceil(gh / r) * r);
    if (waste < best - 0.02) [rt, best] = [r, waste];
  }
  return { cot, rt, pxt };
}

/** Window a register tile reads: rows and vec4s per input channel, and the padded extent it needs. */
function regWindow(c: GatherConv, g: Grid, t: RegTile, cy: number, cx: number) {
  const tilesX = Math.ceil(g.gw / t.pxt), tilesY = Math.ceil(g.gh / t.rt);
  const cxm = cx % 4, cxa = cx - cxm;
  const nr = (t.rt - 1) * c.s + g.ty;
  const nv = Math.ceil((cxm + (t.pxt - 1) * c.s + g.tx) / 4);
  const hNeed = (tilesY * t.rt - 1) * c.s + cy + g.ty;
  const wNeed = (tilesX - 1) * t.pxt * c.s + cxa + nv * 4;
  return { tilesX, tilesY, cxm, cxa, nr, nv, hNeed, wNeed };
}

function runGather(gpu: Gpu, c: GatherConv, inp: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  const variant = variantFor(gpu);
  const live = c.grids.filter((g) => g.gh > 0 && g.gw > 0);
  const tiles = live.map((g) =>
    regTile(c.oc, g.gh, g.gw, c.s, c.nb * g.gh * g.gw * c.oc * c.ic * g.ty * g.tx)
  );
  const tapped = live.filter((g) => g.ty > 0 && g.tx > 0);
  const pt = Math.max(0, ...tapped.map((g) => -g.by)), pl = Math.max(0, ...tapped.map((g) => -g.bx));
  let hNeed = 1, wNeed = 4;
  live.forEach((g, i) => {
    if (g.ty === 0 || g.tx === 0) return;
    const win = regWindow(c, g, tiles[i], g.by + pt, g.bx + pl);
    hNeed = Math.max(hNeed, win.hNeed);
    wNeed = Math.max(wNeed, win.wNeed);
  });
  const pad = padImages(gpu, inp, c.nb * c.ic, c.inH, c.inW, pt, pl, hNeed, wNeed);
  const out = gpu.empty(c.outShape);
  const bindings = bias ? [pad.t, w, bias, out] : [pad.t, w, out];
  live.forEach((g, i) => {
    const common = {
      OUT_BINDING: bias ? 3 : 2,
      HAS_BIAS: bias ? 1 : 0,
      NB: c.nb,
      IC: c.ic,
      OC: c.oc,
      OH: c.outH,
      OW: c.outW,
      GH: g.gh,
      GW: g.gw,
      OY0: g.oy0,
      OSY: g.osy,
      OX0: g.ox0,
      OSX: g.osx,
      S: c.s,
      CY: g.by + pt,
      TY: g.ty,
      TX: g.tx,
      KW: c.kw,
      WSO: c.wso,
      WSI: c.wsi,
      KY0: g.ky0,
      KYS: g.kys,
      KX0: g.kx0,
      KXS: g.kxs,
    };
    if (variant === "tiled") {
      const consts = { ...common, TILED: 1, CX: g.bx + pl, PLANE: pad.hp * pad.wp, WP: pad.wp };
      const k = compile(gpu, "GATHER_TILED", consts);
      gpu.dispatch(k, bindings, [Math.ceil((c.nb * g.gh * g.gw) / 64), Math.ceil(c.oc / 64)]);
      return;
    }
    const t = tiles[i];
    const win = regWindow(c, g, t, g.by + pt, g.bx + pl);
    const nTiles = c.nb * win.tilesX * win.tilesY;
    const wg = Math.min(64, roundUp(Math.ceil(nTiles / 4), 8));
    const consts = {
      ...common,
      WG: wg,
      COT: t.cot,
      RT: t.rt,
      PXT: t.pxt,
      TILES: nTiles,
      TILES_X: win.tilesX,
      TILES_Y: win.tilesY,
      CXA: win.cxa,
      CXM: win.cxm,
      PLANE4: pad.hp * pad.wp / 4,
      WP4: pad.wp / 4,
      HAS_TAPS: g.ty > 0 && g.tx > 0 ? 1 : 0,
      // vec4 stores need whole output rows in order, each tile starting at a multiple of 4
      VEC_OUT: g.osx === 1 && g.osy === 1 && g.ox0 === 0 && g.gw === c.outW && c.outW % 4 === 0 &&
          t.pxt % 4 === 0
        ? 1
        : 0,
    };
    const k = compile(gpu, "GATHER_REG", consts, () => gatherRegisterCode(consts, win.nv));
    gpu.dispatch(k, bindings, [Math.ceil(nTiles / wg), Math.ceil(c.oc / t.cot)]);
  });
  if (pad.owned) pad.t.dispose();
  return out;
}

// ---------------------------------------------------------------- register-tile code generation

const LANE = ["x", "y", "z", "w"];
/** Element e of a window held as vec4 values named `${name}_0`, `${name}_1`, ... */
const elem = (name: string, e: number) => `${name}_${e >> 2}.${LANE[e & 3]}`;
const ints = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Unrolled body of GATHER_REG: accumulators a{c}_{row}_{col}, window rows x{r}_{vec4}. */
function gatherRegisterCode(k: Record<string, number>, nv: number): Consts {
  const { COT, RT, PXT, S, TX, KX0, KXS, CXM, WP4, OC, OH, OW, OSY, OSX } = k;
  const init: string[] = [];
  for (const c of ints(COT)) {
    init.push(`  let wo${c} = min(o0 + ${c}u, ${OC - 1}u) * ${k.WSO}u;`);
    if (k.HAS_BIAS) init.push(`  let bv${c} = bias[min(o0 + ${c}u, ${OC - 1}u)];`);
    for (const rr of ints(RT)) {
      for (const p of ints(PXT)) init.push(`  var a${c}_${rr}_${p} = ${k.HAS_BIAS ? `bv${c}` : "0.0"};`);
    }
  }
  const body: string[] = [];
  for (const rr of ints(RT)) {
    for (const j of ints(nv)) body.push(`      let x${rr}_${j} = inp[rb + ${rr * S * WP4 + j}u];`);
  }
  for (const tx of ints(TX)) {
    for (const c of ints(COT)) {
      body.push(`      { let w = wt[wo${c} + tb + ${KX0 + KXS * tx}u];`);
      for (const rr of ints(RT)) {
        for (const p of ints(PXT)) {
          const acc = `a${c}_${rr}_${p}`;
          body.push(`        ${acc} = fma(w, ${elem(`x${rr}`, CXM + p * S + tx)}, ${acc});`);
        }
      }
      body.push(`      }`);
    }
  }
  const store: string[] = [
    `  let ob = n * ${OC * OH * OW}u + (${k.OY0}u + ${OSY}u * a0) * ${OW}u + ${k.OX0}u + ${OSX}u * b0;`,
  ];
  for (const rr of ints(RT)) store.push(`  let okr${rr} = a0 + ${rr}u < ${k.GH}u;`);
  for (const p of ints(PXT)) store.push(`  let okp${p} = b0 + ${p}u < ${k.GW}u;`);
  for (const c of ints(COT)) {
    store.push(`  if (o0 + ${c}u < ${OC}u) {`, `    let oc${c} = ob + (o0 + ${c}u) * ${OH * OW}u;`);
    for (const rr of ints(RT)) {
      if (k.VEC_OUT) {
        // whole vec4s: the row, its tiles and the valid columns all start at multiples of 4
        for (const p of ints(PXT / 4).map((v) => 4 * v)) {
          const v = ints(4).map((e) => `a${c}_${rr}_${p + e}`).join(", ");
          store.push(`    if (okr${rr} && okp${p}) { out[(oc${c} + ${rr * OW + p}u) / 4u] = vec4f(${v}); }`);
        }
        continue;
      }
      for (const p of ints(PXT)) {
        const at = rr * OSY * OW + p * OSX;
        store.push(`    if (okr${rr} && okp${p}) { out[oc${c} + ${at}u] = a${c}_${rr}_${p}; }`);
      }
    }
    store.push(`  }`);
  }
  return { INIT: init.join("\n"), BODY: body.join("\n"), STORE: store.join("\n") };
}

/** Unrolled body of WGRAD_REG: accumulators g{c}_{t}_{ky}_{kx} (output channel c, input channel t of
 * the lane), dy vec4s d{c}_{v}, x windows x{t}_{ky}_{v}. */
function wgradRegisterCode(k: Record<string, number>, nv: number): Consts {
  const { COT, CIT, KW, OXB, S, CXM, WP4, OC, IC, DPLANE4, PLANE4 } = k;
  const init: string[] = [];
  for (const c of ints(COT)) init.push(`  let do${c} = min(o0 + ${c}u, ${OC - 1}u) * ${DPLANE4}u;`);
  for (const t of ints(CIT)) init.push(`  let xo${t} = min(ci0 + ${t}u, ${IC - 1}u) * ${PLANE4}u;`);
  const taps = ints(KW * KW).map((i) => [Math.floor(i / KW), i % KW]);
  for (const c of ints(COT)) {
    for (const t of ints(CIT)) for (const [ky, kx] of taps) init.push(`  var g${c}_${t}_${ky}_${kx} = 0.0;`);
  }
  const body: string[] = [];
  for (const c of ints(COT)) {
    for (const v of ints(OXB / 4)) body.push(`      let d${c}_${v} = dyp[dq + do${c} + ${v}u];`);
  }
  for (const t of ints(CIT)) {
    for (const ky of ints(KW)) {
      const x = `x${t}_${ky}`;
      for (const j of ints(nv)) body.push(`      let ${x}_${j} = xp[xq + xo${t} + ${ky * WP4 + j}u];`);
      for (const kx of ints(KW)) {
        for (const c of ints(COT)) {
          const g = `g${c}_${t}_${ky}_${kx}`;
          let sum = g;
          for (const p of ints(OXB)) sum = `fma(${elem(`d${c}`, p)}, ${elem(x, CXM + p * S + kx)}, ${sum})`;
          body.push(`      ${g} = ${sum};`);
        }
      }
    }
  }
  const store: string[] = [];
  for (const t of ints(CIT)) {
    store.push(`  if (ci0 + ${t}u < ${IC}u) {`);
    for (const c of ints(COT)) {
      store.push(`    if (o0 + ${c}u < ${OC}u) {`);
      store.push(
        `      let pb = (chunk * ${OC}u + o0 + ${c}u) * ${IC * KW * KW}u + (ci0 + ${t}u) * ${KW * KW}u;`,
      );
      for (const [ky, kx] of taps) store.push(`      part[pb + ${ky * KW + kx}u] = g${c}_${t}_${ky}_${kx};`);
      store.push(`    }`);
    }
    store.push(`  }`);
  }
  return { INIT: init.join("\n"), BODY: body.join("\n"), STORE: store.join("\n") };
}

// ---------------------------------------------------------------- public ops

function checkBias(op: string, bias: Tensor | null, cout: number): void {
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== cout)) {
    throw new ShapeError(op, `bias must be [${cout}], got [${bias.shape}]`);
  }
}

function checkDy(op: string, dy: Tensor, g: Geometry): void {
  const want = [g.n, g.cout, g.oh, g.ow];
  if (dy.shape.join() !== want.join()) throw new ShapeError(op, `dy must be [${want}], got [${dy.shape}]`);
}

/** y = conv2d(x, w) + bias: x [N,Cin,H,W], w [Cout,Cin,k,k], bias [Cout] or null -> [N,Cout,Ho,Wo]. */
export function conv2d(
  gpu: Gpu,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts: Conv2dOptions = {},
): Tensor {
  const g0 = geometry("conv2d", x.shape, w.shape, opts);
  checkBias("conv2d", bias, g0.cout);
  const g = flattened(g0);
  const grid: Grid = {
    gh: g.oh,
    gw: g.ow,
    oy0: 0,
    osy: 1,
    ox0: 0,
    osx: 1,
    by: -g.p,
    bx: -g.p,
    ty: g.k,
    tx: g.k,
    ky0: 0,
    kys: 1,
    kx0: 0,
    kxs: 1,
  };
  return runGather(
    gpu,
    {
      outShape: [g0.n, g0.cout, g0.oh, g0.ow],
      nb: g.n,
      ic: g.cin,
      inH: g.h,
      inW: g.w,
      oc: g.cout,
      outH: g.oh,
      outW: g.ow,
      s: g.s,
      kw: g.k,
      wso: g.cin * g.k * g.k,
      wsi: g.k * g.k,
      grids: [grid],
    },
    x,
    w,
    bias,
  );
}

/**
 * The taps of a transposed conv along one axis for input positions i = r + s*a (parity class r): tap t
 * uses kernel index kMax - s*t and reads output position a + base + t.
 */
function transposedAxis(size: number, k: number, s: number, p: number, r: number) {
  const valid = ints(k).filter((kk) => (((r + p - kk) % s) + s) % s === 0);
  const kMax = valid.length ? valid[valid.length - 1] : 0;
  const base = valid.length ? (r + p - kMax) / s : 0;
  return { count: Math.ceil((size - r) / s), taps: valid.length, k0: kMax, base };
}

/** dx of conv2d: dy [N,Cout,Ho,Wo], w [Cout,Cin,k,k] -> [N,Cin,H,W] (xShape). */
export function conv2dBackwardInput(
  gpu: Gpu,
  dy: Tensor,
  w: Tensor,
  xShape: readonly number[],
  opts: Conv2dOptions = {},
): Tensor {
  const g0 = geometry("conv2dBackwardInput", xShape, w.shape, opts);
  checkDy("conv2dBackwardInput", dy, g0);
  const g = flattened(g0);
  const grids: Grid[] = [];
  for (const ry of ints(g.s)) {
    for (const rx of ints(g.s)) {
      const ay = transposedAxis(g.h, g.k, g.s, g.p, ry), ax = transposedAxis(g.w, g.k, g.s, g.p, rx);
      grids.push({
        gh: ay.count,
        gw: ax.count,
        oy0: ry,
        osy: g.s,
        ox0: rx,
        osx: g.s,
        by: ay.base,
        bx: ax.base,
        ty: ay.taps,
        tx: ax.taps,
        ky0: ay.k0,
        kys: -g.s,
        kx0: ax.k0,
        kxs: -g.s,
      });
    }
  }
  return runGather(
    gpu,
    {
      outShape: xShape,
      nb: g.n,
      ic: g.cout,
      inH: g.oh,
      inW: g.ow,
      oc: g.cin,
      outH: g.h,
      outW: g.w,
      s: 1,
      kw: g.k,
      wso: g.k * g.k,
      wsi: g.cin * g.k * g.k,
      grids,
    },
    dy,
    w,
    null,
  );
}

/** Number of reduction chunks so that `base` workgroups per chunk make at least `want` in all. */
function chunking(rows: number, base: number, want: number): { chunks: number; perChunk: number } {
  const perChunk = Math.ceil(rows / Math.max(1, Math.min(rows, Math.ceil(want / base))));
  return { chunks: Math.ceil(rows / perChunk), perChunk };
}

/**
 * Register tile of the software weight gradient: COT output x CIT input channels x k*k taps per lane,
 * OXB pixels per inner step. Measured on llvmpipe (GFLOP/s per two cores, 16x64x32x32 3x3): COTxCITxOXB
 * 4x1x8 18, 8x1x8 22, 8x2x8 23, 8x2x4 26, 16x2x4 27 (and 8x2x4 25 vs 8x2x8 18 at 28x28, where 8 pixels
 * per step need a padded copy of dy); a 1x1 (a plain GEMM) wants more input channels: 8x1 4, 8x4 11, 8x8 15.
 */
function wgradTile(g: Geometry): { cot: number; cit: number; oxb: number } {
  if (g.n * g.oh * g.ow * g.cout * g.cin * g.k * g.k < SMALL_WORK) {
    return { cot: Math.min(4, g.cout), cit: 1, oxb: 4 };
  }
  const cot = Math.min(8, g.cout);
  const cit = g.k === 1 ? Math.min(8, Math.max(1, Math.floor(g.cin / 8))) : g.cin >= 16 ? 2 : 1;
  return { cot, cit, oxb: 4 };
}

/** dW of conv2d: x [N,Cin,H,W], dy [N,Cout,Ho,Wo] -> [Cout,Cin,k,k] (wShape). */
export function conv2dBackwardWeight(
  gpu: Gpu,
  x: Tensor,
  dy: Tensor,
  wShape: readonly number[],
  opts: Conv2dOptions = {},
): Tensor {
  const g0 = geometry("conv2dBackwardWeight", x.shape, wShape, opts);
  checkDy("conv2dBackwardWeight", dy, g0);
  const g = flattened(g0);
  const kk = g.k * g.k, len = g.cout * g.cin * kk;
  let part: Tensor, chunks: number;
  const temps: Tensor[] = [];
  if (variantFor(gpu) === "tiled") {
    const xp = padImages(
      gpu,
      x,
      g.n * g.cin,
      g.h,
      g.w,
      g.p,
      g.p,
      (g.oh - 1) * g.s + g.k,
      (g.ow - 1) * g.s + g.k,
    );
    if (xp.owned) temps.push(xp.t);
    const base = Math.ceil(g.cin * kk / 64) * Math.ceil(g.cout / 64);
    // a real GPU wants a few hundred workgroups in flight
    const ch = chunking(g.n * g.oh * g.ow, base, 256);
    chunks = ch.chunks;
    part = chunks === 1 ? gpu.empty(wShape) : gpu.empty([chunks, len]);
    const k = compile(gpu, "WGRAD_TILED", {
      TILED: 1,
      NB: g.n,
      IC: g.cin,
      OC: g.cout,
      OH: g.oh,
      OW: g.ow,
      KW: g.k,
      S: g.s,
      CY: 0,
      CX: 0,
      PLANE: xp.hp * xp.wp,
      WP: xp.wp,
      QPC: ch.perChunk,
    });
    gpu.dispatch(k, [xp.t, dy, part], [Math.ceil(g.cin * kk / 64), Math.ceil(g.cout / 64), chunks]);
  } else {
    const { cot, cit, oxb } = wgradTile(g);
    const dw = roundUp(g.ow, oxb), qn = dw / oxb;
    const nv = Math.ceil(((oxb - 1) * g.s + g.k) / 4);
    const xp = padImages(
      gpu,
      x,
      g.n * g.cin,
      g.h,
      g.w,
      g.p,
      g.p,
      (g.oh - 1) * g.s + g.k,
      (qn - 1) * oxb * g.s + nv * 4,
    );
    const dyp = padImages(gpu, dy, g.n * g.cout, g.oh, g.ow, 0, 0, g.oh, dw);
    for (const t of [xp, dyp]) if (t.owned) temps.push(t.t);
    const lanes = Math.ceil(g.cin / cit);
    // with fewer input channels than SIMD lanes, the lanes take reduction chunks instead
    const laneChunks = lanes < 8;
    const wg = laneChunks ? 8 : Math.min(64, roundUp(lanes, 8));
    const base = laneChunks
      ? lanes * Math.ceil(g.cout / cot)
      : Math.ceil(lanes / wg) * Math.ceil(g.cout / cot);
    // enough workgroups to fill the threads: 32 of them, or 16 of 8 chunk-lanes each
    const ch = chunking(g.n * g.oh, laneChunks ? 1 : base, laneChunks ? wg * Math.ceil(16 / base) : 32);
    chunks = laneChunks ? roundUp(ch.chunks, wg) : ch.chunks;
    part = chunks === 1 ? gpu.empty(wShape) : gpu.empty([chunks, len]);
    const consts = {
      WG: wg,
      IC: g.cin,
      OC: g.cout,
      COT: cot,
      CIT: cit,
      KW: g.k,
      S: g.s,
      OXB: oxb,
      CY: 0,
      CXA: 0,
      CXM: 0,
      LANE_CHUNKS: laneChunks ? 1 : 0,
      RPC: ch.perChunk,
      ROWS: g.n * g.oh,
      OH: g.oh,
      PLANE4: xp.hp * xp.wp / 4,
      WP4: xp.wp / 4,
      DPLANE4: g.oh * dw / 4,
      DW4: dw / 4,
      QN: qn,
      XQ4: oxb * g.s / 4,
      OXB4: oxb / 4,
    };
    const k = compile(gpu, "WGRAD_REG", consts, () => wgradRegisterCode(consts, nv));
    const grid = laneChunks
      ? [lanes, Math.ceil(g.cout / cot), chunks / wg]
      : [Math.ceil(lanes / wg), Math.ceil(g.cout / cot), chunks];
    gpu.dispatch(k, [xp.t, dyp.t, part], grid as [number, number, number]);
  }
  for (const t of temps) t.dispose();
  if (chunks === 1) return part;
  const out = gpu.empty(wShape);
  const k = compile(gpu, "SUM_PARTIALS", { LEN: len, CHUNKS: chunks });
  gpu.dispatch(k, [part, out], Math.ceil(len / 64));
  part.dispose();
  return out;
}

/** d bias of conv2d: the sum of dy [N,Cout,Ho,Wo] over batch and pixels -> [Cout]. */
export function conv2dBackwardBias(gpu: Gpu, dy: Tensor): Tensor {
  if (dy.shape.length !== 4) throw new ShapeError("conv2dBackwardBias", `dy must be 4-D, got [${dy.shape}]`);
  const [n, cout, oh, ow] = dy.shape;
  const part = gpu.empty([n, cout]);
  const k = compile(gpu, "BIAS_GRAD", { NB: n, OC: cout, HW: oh * ow });
  gpu.dispatch(k, [dy, part], Math.ceil(n * cout / 64));
  const out = gpu.empty([cout]);
  gpu.dispatch(compile(gpu, "SUM_PARTIALS", { LEN: cout, CHUNKS: n }), [part, out], Math.ceil(cout / 64));
  part.dispose();
  return out;
}
