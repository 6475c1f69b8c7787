// The convolution family (NCHW images, weights [Cout, Cin, k, k]) as implicit GEMMs, never an im2col.
//
// Image operands are first copied into a zero-padded layout (PAD) unless they already fit it: padding
// rows/columns hold zeros and rows are a multiple of 4 floats long, so the conv kernels read aligned vec4s
// with no bounds masks.
//
// GATHER_*: out[n, o, Y, X] = bias[o] + sum over i, ty, tx of
//     W(o, i, ty, tx) * in[n, i, a*S + CY + ty, b*S + CX + tx]   (in: the padded input)
//   for a grid (a, b) of GH x GW output pixels placed at Y = OY0 + OSY*a, X = OX0 + OSX*b, with
//   W(o, i, ty, tx) = wt[o*WSO + i*WSI + (KY0 + KYS*ty)*KW + KX0 + KXS*tx].
//   The forward is one such grid; the input gradient (a transposed conv) is one grid for stride 1 and one
//   grid per output parity class for stride 2, where only every other tap touches the pixel.
// WGRAD_*: partial[chunk, co, ci*KK + ky*KW + kx] = sum over the chunk's rows (n, oy) and columns ox of
//   dy[n, co, oy, ox] * x[n, ci, oy*S + ky, ox*S + kx] (padded x); SUM_PARTIALS adds the chunks.
// BIAS_GRAD: per-image sums of dy per channel, which SUM_PARTIALS adds over the batch.
//
// Two variants per GEMM: *_REG for software adapters (llvmpipe), barrier-free, each invocation holding a
// register tile whose fully unrolled body the host generates (the INIT, BODY and STORE code: WGSL has
// no unroll, and llvmpipe keeps only constant-indexed values in registers); *_TILED for real GPUs, a
// shared-memory tiled GEMM (64x64 tile, K-step 16, 4x4 outputs per invocation).

//#if PAD
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4f>;

// dst[plane, r, c] = src[plane, r - PT, c - PL] inside the image, 0 elsewhere; one vec4 per invocation.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= {{TOTAL4}}u) { return; }
  let c4 = i % {{WP4}}u;
  let r = (i / {{WP4}}u) % {{HP}}u;
  let plane = i / ({{WP4}}u * {{HP}}u);
  // branch-free: read a clamped (always valid) address and select zero outside the image
  let y = i32(r) - {{PT}};
  let base = (plane * {{H}}u + u32(clamp(y, 0, {{H}} - 1))) * {{W}}u;
  let x = vec4i(i32(c4 * 4u) - {{PL}}) + vec4i(0, 1, 2, 3);
  let ok = vec4<bool>(y >= 0 && y < {{H}}) & (x >= vec4i(0)) & (x < vec4i({{W}}));
  let cx = vec4u(clamp(x, vec4i(0), vec4i({{W}} - 1)));
  let v = vec4f(src[base + cx.x], src[base + cx.y], src[base + cx.z], src[base + cx.w]);
  dst[i] = select(vec4f(0.0), v, ok);
}
//#endif

//#if GATHER_REG
@group(0) @binding(0) var<storage, read> inp: array<vec4f>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
//#if HAS_BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;
//#endif
//#if VEC_OUT
@group(0) @binding({{OUT_BINDING}}) var<storage, read_write> out: array<vec4f>;
//#else
@group(0) @binding({{OUT_BINDING}}) var<storage, read_write> out: array<f32>;
//#endif

// Lanes are pixel tiles (RT rows x PXT columns of one image); the output-channel tile comes from the
// workgroup id, so weight loads have uniform addresses (llvmpipe loads those once, not per lane).
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = gid.x;
  if (t >= {{TILES}}u) { return; }
  let b0 = (t % {{TILES_X}}u) * {{PXT}}u;
  let a0 = ((t / {{TILES_X}}u) % {{TILES_Y}}u) * {{RT}}u;
  let n = t / ({{TILES_X}}u * {{TILES_Y}}u);
  let o0 = wid.y * {{COT}}u;
  // first vec4 of the tile's input window: b0*S is a multiple of 4, so the window is aligned
  let base = n * {{IC}}u * {{PLANE4}}u + (a0 * {{S}}u + {{CY}}u) * {{WP4}}u + (b0 * {{S}}u + {{CXA}}u) / 4u;
{{INIT}}
//#if HAS_TAPS
  // kernel rows stay a runtime loop: unrolling them too triples LLVM's compile time for little speed
  for (var i = 0u; i < {{IC}}u; i++) {
    for (var ty = 0u; ty < {{TY}}u; ty++) {
      let rb = base + i * {{PLANE4}}u + ty * {{WP4}}u;
      let tb = i * {{WSI}}u + u32({{KY0}} + {{KYS}} * i32(ty)) * {{KW}}u;
{{BODY}}
    }
  }
//#else
  // no tap reaches these pixels (stride-2 transposed 1x1 conv): they are zero. The never-taken branch
  // keeps the bindings in the pipeline's automatic layout.
  if (o0 > {{OC}}u * 2u) { a0_0_0 += inp[0].x + wt[0]; }
//#endif
{{STORE}}
}
//#endif

//#if WGRAD_REG
@group(0) @binding(0) var<storage, read> xp: array<vec4f>;
@group(0) @binding(1) var<storage, read> dyp: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;

// Lanes hold CIT input channels each; the output-channel tile and the reduction chunk come from the
// workgroup id, so dy loads have uniform addresses. Each lane holds COT x CIT x KW x KW accumulators.
@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
//#if LANE_CHUNKS
  // too few input channels to fill the lanes (an RGB or grey input layer): lanes take reduction chunks
  let ci0 = wid.x * {{CIT}}u;
  let chunk = wid.z * {{WG}}u + lid;
//#else
  let ci0 = (wid.x * {{WG}}u + lid) * {{CIT}}u;
  let chunk = wid.z;
//#endif
  let o0 = wid.y * {{COT}}u;
{{INIT}}
  let rowEnd = min((chunk + 1u) * {{RPC}}u, {{ROWS}}u);
  for (var row = chunk * {{RPC}}u; row < rowEnd; row++) {
    let n = row / {{OH}}u;
    let oy = row % {{OH}}u;
    let xrow = n * {{IC}}u * {{PLANE4}}u + (oy * {{S}}u + {{CY}}u) * {{WP4}}u + {{CXA}}u / 4u;
    let dyrow = n * {{OC}}u * {{DPLANE4}}u + oy * {{DW4}}u;
    for (var q = 0u; q < {{QN}}u; q++) {
      let xq = xrow + q * {{XQ4}}u;
      let dq = dyrow + q * {{OXB4}}u;
{{BODY}}
    }
  }
{{STORE}}
}
//#endif

//#if SUM_PARTIALS
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= {{LEN}}u) { return; }
  var s = 0.0;
  for (var c = 0u; c < {{CHUNKS}}u; c++) { s += part[c * {{LEN}}u + i]; }
  out[i] = s;
}
//#endif

//#if BIAS_GRAD
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> part: array<f32>;

// part[n, co] = sum of dy[n, co, :] (SUM_PARTIALS then adds over n). No barriers: on llvmpipe a
// barrier is a coroutine switch per 8 lanes.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= {{NB}}u * {{OC}}u) { return; }
  let base = i * {{HW}}u;
  var s = vec4f(0.0);
  for (var j = 0u; j + 4u <= {{HW}}u; j += 4u) {
    s += vec4f(dy[base + j], dy[base + j + 1u], dy[base + j + 2u], dy[base + j + 3u]);
  }
  var t = s.x + s.y + s.z + s.w;
  for (var j = {{HW}}u / 4u * 4u; j < {{HW}}u; j++) { t += dy[base + j]; }
  part[i] = t;
}
//#endif

//#if TILED
// Shared-memory tiled GEMM C[m, c] = sum_k A(m, k) B(k, c) for real GPUs: a 64x64 output tile per
// workgroup of 256, K-step 16, each invocation a 4x4 block. A and B are read through the loaders below,
// which compute implicit-GEMM addresses into the padded operands.
//#if GATHER_TILED
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
//#if HAS_BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;
//#endif
@group(0) @binding({{OUT_BINDING}}) var<storage, read_write> out: array<f32>;
const TAPS = {{TY}}u * {{TX}}u;
const M = {{OC}}u;
const NCOL = {{NB}}u * {{GH}}u * {{GW}}u;
const KLEN = {{IC}}u * TAPS;

// A(m, r): weight of output channel m for input channel r / TAPS and tap r % TAPS
fn loadA(m: u32, r: u32, chunk: u32) -> f32 {
  if (m >= M || r >= KLEN) { return 0.0; }
  let i = r / TAPS;
  let ty = (r % TAPS) / {{TX}}u;
  let tx = r % {{TX}}u;
  let ky = u32({{KY0}} + {{KYS}} * i32(ty));
  let kx = u32({{KX0}} + {{KXS}} * i32(tx));
  return wt[m * {{WSO}}u + i * {{WSI}}u + ky * {{KW}}u + kx];
}

// B(r, c): padded input under tap r for grid pixel c = (n, a, b)
fn loadB(r: u32, c: u32, chunk: u32) -> f32 {
  if (r >= KLEN || c >= NCOL) { return 0.0; }
  let i = r / TAPS;
  let ty = (r % TAPS) / {{TX}}u;
  let tx = r % {{TX}}u;
  let b = c % {{GW}}u;
  let a = (c / {{GW}}u) % {{GH}}u;
  let n = c / ({{GW}}u * {{GH}}u);
  let row = (n * {{IC}}u + i) * {{PLANE}}u + (a * {{S}}u + {{CY}}u + ty) * {{WP}}u;
  return inp[row + b * {{S}}u + {{CX}}u + tx];
}

fn kRange(chunk: u32) -> vec2u { return vec2u(0u, KLEN); }

fn store(m: u32, c: u32, chunk: u32, v: f32) {
  if (m >= M || c >= NCOL) { return; }
  let b = c % {{GW}}u;
  let a = (c / {{GW}}u) % {{GH}}u;
  let n = c / ({{GW}}u * {{GH}}u);
//#if HAS_BIAS
  let r = v + bias[m];
//#else
  let r = v;
//#endif
  out[((n * M + m) * {{OH}}u + {{OY0}}u + {{OSY}}u * a) * {{OW}}u + {{OX0}}u + {{OSX}}u * b] = r;
}
//#endif

//#if WGRAD_TILED
@group(0) @binding(0) var<storage, read> xp: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
const KK = {{KW}}u * {{KW}}u;
const M = {{OC}}u;
const NCOL = {{IC}}u * KK;
const OHW = {{OH}}u * {{OW}}u;

// the chunk's range of reduction indices q = n * OH * OW + oy * OW + ox
fn kRange(chunk: u32) -> vec2u {
  return vec2u(chunk * {{QPC}}u, min((chunk + 1u) * {{QPC}}u, {{NB}}u * OHW));
}

fn loadA(m: u32, q: u32, chunk: u32) -> f32 {
  if (m >= M || q >= kRange(chunk).y) { return 0.0; }
  let n = q / OHW;
  return dy[(n * M + m) * OHW + q % OHW];
}

fn loadB(q: u32, c: u32, chunk: u32) -> f32 {
  if (c >= NCOL || q >= kRange(chunk).y) { return 0.0; }
  let n = q / OHW;
  let oy = (q % OHW) / {{OW}}u;
  let ox = q % {{OW}}u;
  let ci = c / KK;
  let ky = (c % KK) / {{KW}}u;
  let kx = c % {{KW}}u;
  let row = (n * {{IC}}u + ci) * {{PLANE}}u + (oy * {{S}}u + {{CY}}u + ky) * {{WP}}u;
  return xp[row + ox * {{S}}u + {{CX}}u + kx];
}

fn store(m: u32, c: u32, chunk: u32, v: f32) {
  if (m >= M || c >= NCOL) { return; }
  part[(chunk * M + m) * NCOL + c] = v;
}
//#endif

var<workgroup> As: array<vec4f, 256>; // [k][m / 4], 16 x 64
var<workgroup> Bs: array<vec4f, 256>; // [k][c / 4], 16 x 64

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let m0 = wid.y * 64u;
  let c0 = wid.x * 64u;
  let chunk = wid.z;
  // loading: invocation lid fills row lk of both tiles, columns 4*lj .. 4*lj + 3
  let lk = lid / 16u;
  let lj = (lid % 16u) * 4u;
  // computing: rows tm .. tm + 3 of A, columns tc .. tc + 3 of B
  let tm = lid / 16u;
  let tc = lid % 16u;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  let kr = kRange(chunk);
  for (var k0 = kr.x; k0 < kr.y; k0 += 16u) {
    let k = k0 + lk;
    As[lid] = vec4f(loadA(m0 + lj, k, chunk), loadA(m0 + lj + 1u, k, chunk), loadA(m0 + lj + 2u, k, chunk),
      loadA(m0 + lj + 3u, k, chunk));
    Bs[lid] = vec4f(loadB(k, c0 + lj, chunk), loadB(k, c0 + lj + 1u, chunk), loadB(k, c0 + lj + 2u, chunk),
      loadB(k, c0 + lj + 3u, chunk));
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let a = As[kk * 16u + tm];
      let b = Bs[kk * 16u + tc];
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();
  }
  let m = m0 + tm * 4u;
  let c = c0 + tc * 4u;
  for (var e = 0u; e < 4u; e++) {
    store(m, c + e, chunk, acc0[e]);
    store(m + 1u, c + e, chunk, acc1[e]);
    store(m + 2u, c + e, chunk, acc2[e]);
    store(m + 3u, c + e, chunk, acc3[e]);
  }
}
//#endif
