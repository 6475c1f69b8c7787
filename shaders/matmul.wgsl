// Batched GEMM: C[b] = ALPHA * op(A[b]) op(B[b]) (+ bias[n]), op(X) = X or X^T, with op(A) [M,K] and
// op(B) [K,N]. Batch strides SA/SB/SC are 0 for an operand broadcast over the batch. With REDUCE the
// batch is summed into one output (the gradient of a broadcast operand); with ONES_A, A is a virtual
// matrix of ones (a column sum of B). Two variants from this one template:
// - SHARED (real GPUs): 64x64 output tile per workgroup of 16x16, K-step 8 through workgroup memory,
//   4x4 outputs per invocation.
// - register (llvmpipe): no workgroup memory and no barriers (each barrier is a coroutine switch there);
//   every invocation computes a 4x8 tile from vec4 loads. Edges are handled by clamping load indices (the
//   extra values are computed and never stored) and a scalar loop over the K remainder, so the main loop
//   has no per-element branch.
// VEC_A/VEC_B/VEC_C say the operand's rows are 16-byte aligned, so it is bound as array<vec4f>.

const M = {{M}}u;
const N = {{N}}u;
const K = {{K}}u;
const K4 = {{K4}}u; // K rounded down to a multiple of 4
const BATCH = {{BATCH}}u;
const SA = {{SA}}u;
const SB = {{SB}}u;
const SC = {{SC}}u;
const ALPHA = {{ALPHA}};

//#if ONES_A
fn ga(i: u32) -> f32 { return 1.0; }
fn ga4(i: u32) -> vec4f { return vec4f(1.0); }
//#elif VEC_A
@group(0) @binding(0) var<storage, read> A: array<vec4f>;
fn ga(i: u32) -> f32 { return A[i >> 2u][i & 3u]; }
fn ga4(i: u32) -> vec4f { return A[i >> 2u]; }
//#else
@group(0) @binding(0) var<storage, read> A: array<f32>;
fn ga(i: u32) -> f32 { return A[i]; }
fn ga4(i: u32) -> vec4f { return vec4f(A[i], A[i + 1u], A[i + 2u], A[i + 3u]); }
//#endif

//#if VEC_B
@group(0) @binding({{BIND_B}}) var<storage, read> B: array<vec4f>;
fn gb(i: u32) -> f32 { return B[i >> 2u][i & 3u]; }
fn gb4(i: u32) -> vec4f { return B[i >> 2u]; }
//#else
@group(0) @binding({{BIND_B}}) var<storage, read> B: array<f32>;
fn gb(i: u32) -> f32 { return B[i]; }
fn gb4(i: u32) -> vec4f { return vec4f(B[i], B[i + 1u], B[i + 2u], B[i + 3u]); }
//#endif

//#if BIAS
@group(0) @binding({{BIND_BIAS}}) var<storage, read> bias: array<f32>;
//#endif

//#if VEC_C
@group(0) @binding({{BIND_C}}) var<storage, read_write> C: array<vec4f>;
//#else
@group(0) @binding({{BIND_C}}) var<storage, read_write> C: array<f32>;
//#endif

// Index of op(A)[m, k] and op(B)[k, n] within one batch entry.
fn ia(m: u32, k: u32) -> u32 {
//#if TRANS_A
  return k * M + m;
//#else
  return m * K + k;
//#endif
}
fn ib(k: u32, n: u32) -> u32 {
//#if TRANS_B
  return n * K + k;
//#else
  return k * N + n;
//#endif
}

// Scale, add the bias, and store 4 consecutive outputs of row m from column n (a multiple of 4).
fn storeQuad(base: u32, m: u32, n: u32, acc: vec4f) {
  if (m >= M || n >= N) { return; }
  var v = acc * ALPHA;
//#if BIAS
  let nb = min(vec4u(n) + vec4u(0u, 1u, 2u, 3u), vec4u(N - 1u));
  v += vec4f(bias[nb.x], bias[nb.y], bias[nb.z], bias[nb.w]);
//#endif
  let i = base + m * N + n;
//#if VEC_C
  C[i >> 2u] = v;
//#else
  C[i] = v.x;
  if (n + 1u < N) { C[i + 1u] = v.y; }
  if (n + 2u < N) { C[i + 2u] = v.z; }
  if (n + 3u < N) { C[i + 3u] = v.w; }
//#endif
}

//#if SHARED
// Tiles are vec4 arrays: naga zero-initialises workgroup memory, and llvmpipe's compile time grows
// steeply with the number of array elements (1024 f32: 10 s; 128 vec4f: 0.4 s), so keep them few.
var<workgroup> As: array<vec4f, 128>; // [kk][mq]: op(A)[tileM + 4 mq .. +3, k0 + kk]
var<workgroup> Bs: array<vec4f, 128>; // [kk][nq]: op(B)[k0 + kk, tileN + 4 nq .. +3]

fn stageA(base: u32, m: u32, k: u32) -> vec4f {
  var v = vec4f(0.0);
  if (k < K) {
    if (m < M) { v.x = ga(base + ia(m, k)); }
    if (m + 1u < M) { v.y = ga(base + ia(m + 1u, k)); }
    if (m + 2u < M) { v.z = ga(base + ia(m + 2u, k)); }
    if (m + 3u < M) { v.w = ga(base + ia(m + 3u, k)); }
  }
  return v;
}
fn stageB(base: u32, k: u32, n: u32) -> vec4f {
  var v = vec4f(0.0);
  if (k < K) {
    if (n < N) { v.x = gb(base + ib(k, n)); }
    if (n + 1u < N) { v.y = gb(base + ib(k, n + 1u)); }
    if (n + 2u < N) { v.z = gb(base + ib(k, n + 2u)); }
    if (n + 3u < N) { v.w = gb(base + ib(k, n + 3u)); }
  }
  return v;
}

// 64x64 output tile per workgroup, K-step 8; invocation (x, y) computes rows 4y..4y+3, columns 4x..4x+3.
@compute @workgroup_size(16, 16)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(local_invocation_index) t: u32,
) {
  let tileM = wid.y * 64u;
  let tileN = wid.x * 64u;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
//#if REDUCE
  for (var b = 0u; b < BATCH; b++) {
//#else
  let b = wid.z;
  {
//#endif
    let baseA = b * SA;
    let baseB = b * SB;
    for (var k0 = 0u; k0 < K; k0 += 8u) {
      // invocations 0..127 stage one vec4 of the A tile, 128..255 one of the B tile; the index order
      // makes neighbouring invocations read neighbouring addresses
      if (t < 128u) {
//#if TRANS_A
        let q = t % 16u;
        let kk = t / 16u;
//#else
        let kk = t % 8u;
        let q = t / 8u;
//#endif
        As[kk * 16u + q] = stageA(baseA, tileM + 4u * q, k0 + kk);
      } else {
        let u = t - 128u;
//#if TRANS_B
        let kk = u % 8u;
        let q = u / 8u;
//#else
        let q = u % 16u;
        let kk = u / 16u;
//#endif
        Bs[kk * 16u + q] = stageB(baseB, k0 + kk, tileN + 4u * q);
      }
      workgroupBarrier();
      for (var kk = 0u; kk < 8u; kk++) {
        let a = As[kk * 16u + lid.y];
        let bv = Bs[kk * 16u + lid.x];
        acc0 += a.x * bv;
        acc1 += a.y * bv;
        acc2 += a.z * bv;
        acc3 += a.w * bv;
      }
      workgroupBarrier();
    }
  }
//#if REDUCE
  let baseC = 0u;
//#else
  let baseC = wid.z * SC;
//#endif
  let m0 = tileM + lid.y * 4u;
  let n0 = tileN + lid.x * 4u;
  storeQuad(baseC, m0, n0, acc0);
  storeQuad(baseC, m0 + 1u, n0, acc1);
  storeQuad(baseC, m0 + 2u, n0, acc2);
  storeQuad(baseC, m0 + 3u, n0, acc3);
}
//#else
// op(A) rows m0..m0+3 (indices clamped in mr) at k..k+3: column r of the result is row r.
fn tileA(base: u32, m0: u32, mr: vec4u, k: u32) -> mat4x4f {
//#if TRANS_A
//#if VEC_A
  // M % 4 == 0, so the 4 rows are in range and contiguous in memory
  let c0 = ga4(base + k * M + m0);
  let c1 = ga4(base + (k + 1u) * M + m0);
  let c2 = ga4(base + (k + 2u) * M + m0);
  let c3 = ga4(base + (k + 3u) * M + m0);
//#else
  let c0 = vec4f(ga(base + ia(mr.x, k)), ga(base + ia(mr.y, k)), ga(base + ia(mr.z, k)), ga(base + ia(mr.w, k)));
  let k1 = k + 1u;
  let c1 = vec4f(ga(base + ia(mr.x, k1)), ga(base + ia(mr.y, k1)), ga(base + ia(mr.z, k1)), ga(base + ia(mr.w, k1)));
  let k2 = k + 2u;
  let c2 = vec4f(ga(base + ia(mr.x, k2)), ga(base + ia(mr.y, k2)), ga(base + ia(mr.z, k2)), ga(base + ia(mr.w, k2)));
  let k3 = k + 3u;
  let c3 = vec4f(ga(base + ia(mr.x, k3)), ga(base + ia(mr.y, k3)), ga(base + ia(mr.z, k3)), ga(base + ia(mr.w, k3)));
//#endif
  return transpose(mat4x4f(c0, c1, c2, c3));
//#else
  return mat4x4f(ga4(base + mr.x * K + k), ga4(base + mr.y * K + k), ga4(base + mr.z * K + k), ga4(base + mr.w * K + k));
//#endif
}

// op(B) rows k..k+3 at columns n0..n0+7 as two matrices whose column kk is row k+kk.
struct TileB { lo: mat4x4f, hi: mat4x4f }

fn tileB(base: u32, k: u32, n0: u32, nc0: vec4u, nc1: vec4u) -> TileB {
//#if TRANS_B
  let lo = mat4x4f(gb4(base + nc0.x * K + k), gb4(base + nc0.y * K + k), gb4(base + nc0.z * K + k), gb4(base + nc0.w * K + k));
  let hi = mat4x4f(gb4(base + nc1.x * K + k), gb4(base + nc1.y * K + k), gb4(base + nc1.z * K + k), gb4(base + nc1.w * K + k));
  return TileB(transpose(lo), transpose(hi));
//#elif VEC_B
  // N % 4 == 0: the upper half starts at most at N - 4, so it stays in range (its extra columns are not stored)
  let nh = min(n0 + 4u, N - 4u);
  let r0 = base + k * N;
  let r1 = r0 + N;
  let r2 = r1 + N;
  let r3 = r2 + N;
  return TileB(
    mat4x4f(gb4(r0 + n0), gb4(r1 + n0), gb4(r2 + n0), gb4(r3 + n0)),
    mat4x4f(gb4(r0 + nh), gb4(r1 + nh), gb4(r2 + nh), gb4(r3 + nh)),
  );
//#else
  return TileB(
    mat4x4f(rowB(base, k, nc0), rowB(base, k + 1u, nc0), rowB(base, k + 2u, nc0), rowB(base, k + 3u, nc0)),
    mat4x4f(rowB(base, k, nc1), rowB(base, k + 1u, nc1), rowB(base, k + 2u, nc1), rowB(base, k + 3u, nc1)),
  );
//#endif
}

// op(B)[k, nc] for 4 (clamped) columns, and op(A)[mr, k] for 4 (clamped) rows: the scalar paths.
fn rowB(base: u32, k: u32, nc: vec4u) -> vec4f {
  return vec4f(gb(base + ib(k, nc.x)), gb(base + ib(k, nc.y)), gb(base + ib(k, nc.z)), gb(base + ib(k, nc.w)));
}
fn colA(base: u32, mr: vec4u, k: u32) -> vec4f {
  return vec4f(ga(base + ia(mr.x, k)), ga(base + ia(mr.y, k)), ga(base + ia(mr.z, k)), ga(base + ia(mr.w, k)));
}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n0 = gid.x * 8u;
  let m0 = gid.y * 4u;
  if (n0 >= N || m0 >= M) { return; }
  let lane = vec4u(0u, 1u, 2u, 3u);
  let mr = min(vec4u(m0) + lane, vec4u(M - 1u));
  let nc0 = min(vec4u(n0) + lane, vec4u(N - 1u));
  let nc1 = min(vec4u(n0 + 4u) + lane, vec4u(N - 1u));
  // acc{r}{l,h}: row m0+r, columns n0..n0+3 (l) and n0+4..n0+7 (h)
  var acc0l = vec4f(0.0);
  var acc0h = vec4f(0.0);
  var acc1l = vec4f(0.0);
  var acc1h = vec4f(0.0);
  var acc2l = vec4f(0.0);
  var acc2h = vec4f(0.0);
  var acc3l = vec4f(0.0);
  var acc3h = vec4f(0.0);
//#if REDUCE
  for (var b = 0u; b < BATCH; b++) {
//#else
  let b = gid.z;
  {
//#endif
    let baseA = b * SA;
    let baseB = b * SB;
    for (var k = 0u; k < K4; k += 4u) {
      let a = tileA(baseA, m0, mr, k);
      let t = tileB(baseB, k, n0, nc0, nc1);
      // matrix * vector sums the columns (rows k..k+3 of op(B)) weighted by op(A)[m, k..k+3]
      acc0l += t.lo * a[0];
      acc0h += t.hi * a[0];
      acc1l += t.lo * a[1];
      acc1h += t.hi * a[1];
      acc2l += t.lo * a[2];
      acc2h += t.hi * a[2];
      acc3l += t.lo * a[3];
      acc3h += t.hi * a[3];
    }
    for (var k = K4; k < K; k++) {
      let a = colA(baseA, mr, k);
      let lo = rowB(baseB, k, nc0);
      let hi = rowB(baseB, k, nc1);
      acc0l += a.x * lo;
      acc0h += a.x * hi;
      acc1l += a.y * lo;
      acc1h += a.y * hi;
      acc2l += a.z * lo;
      acc2h += a.z * hi;
      acc3l += a.w * lo;
      acc3h += a.w * hi;
    }
  }
//#if REDUCE
  let baseC = 0u;
//#else
  let baseC = gid.z * SC;
//#endif
  storeQuad(baseC, m0, n0, acc0l);
  storeQuad(baseC, m0, n0 + 4u, acc0h);
  storeQuad(baseC, m0 + 1u, n0, acc1l);
  storeQuad(baseC, m0 + 1u, n0 + 4u, acc1h);
  storeQuad(baseC, m0 + 2u, n0, acc2l);
  storeQuad(baseC, m0 + 2u, n0 + 4u, acc2h);
  storeQuad(baseC, m0 + 3u, n0, acc3l);
  storeQuad(baseC, m0 + 3u, n0 + 4u, acc3h);
}
//#endif
