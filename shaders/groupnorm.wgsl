// GroupNorm, barrier-free. A row is one (n, group): the contiguous run x[row*M .. row*M+M) of CPG channels
// of HW values each, so every reduction below is over strided parts of contiguous memory (lane k of a
// subgroup reads next to lane k+1: coalesced on GPUs, cache-friendly on llvmpipe).
// One section per kernel (the TypeScript side sets exactly one of the names):
//   FWD_PARTIAL  part[row, p] = (sum x, sum(x - K), sum((x - K)^2)) over elements p, p+P, ... of the row, with
//                the shift K = the row's first value (shifted sums keep E[x^2] - E[x]^2 accurate when
//                |mean| >> std; the plain sum keeps a mean near 0 accurate)
//   FWD_FINAL    mean, rstd per row from its P parts (unfused variant)
//   FWD_NORM     y = (x - mean) * rstd * gamma[c] + beta[c] over elements q, q+NCH, ... of a row; FUSED
//                recomputes the row's stats from the parts (saving a dispatch) and chunk 0 writes mean, rstd
//   BWD_PARTIAL  bpart[n, c, p] = (sum dy, sum dy * xhat) over hw = p, p+P2, ... of channel (n, c)
//   BWD_COEF     dgamma, dbeta per channel (sums over n and parts); per row coef = (sum dxhat, sum dxhat*xhat) / M
//   BWD_DX       dx = rstd * (dy * gamma - a - xhat * b); FUSED recomputes (a, b) from the parts and its last
//                C invocations compute dgamma, dbeta (the parts are complete: they come from the previous dispatch)
// With VEC4 every loop moves vec4s (T); ML and HWL count elements of T, M counts floats. Row kernels use
// vec4s when M % 4 == 0, BWD_PARTIAL (per channel) when HW % 4 == 0; with SPLIT (M % 4 == 0 but not HW) a
// vec4 may straddle channels, so its four gamma/beta values are gathered one by one.
//#if VEC4
alias T = vec4f;
fn hsum(v: T) -> f32 { return dot(v, vec4f(1.0)); }
fn first(v: T) -> f32 { return v.x; }
//#else
alias T = f32;
fn hsum(v: T) -> f32 { return v; }
fn first(v: T) -> f32 { return v; }
//#endif
fn hdot(a: T, b: T) -> f32 { return hsum(a * b); }

const N = {{N}}u;
const C = {{C}}u;
const HW = {{HW}}u;
const G = {{G}}u;
const CPG = {{CPG}}u;
const M = {{M}}u;
const ML = {{ML}}u;
const HWL = {{HWL}}u;
const ROWS = {{ROWS}}u;
const P = {{P}}u;
const NCH = {{NCH}}u;
const P2 = {{P2}}u;
const EPS = {{EPS}};

//#if FWD_PARTIAL
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> part: array<vec3f>;
//#endif
//#if FWD_FINAL
@group(0) @binding(0) var<storage, read> part: array<vec3f>;
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
//#endif
//#if FWD_NORM
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
//#if FUSED
@group(0) @binding(4) var<storage, read> part: array<vec3f>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;
//#else
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
//#endif
//#endif
//#if BWD_PARTIAL
@group(0) @binding(0) var<storage, read> dy: array<T>;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> bpart: array<vec2f>;
//#endif
//#if BWD_COEF
@group(0) @binding(0) var<storage, read> bpart: array<vec2f>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> coef: array<vec2f>;
@group(0) @binding(3) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> dbeta: array<f32>;
//#endif
//#if BWD_DX
@group(0) @binding(0) var<storage, read> dy: array<T>;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<T>;
//#if FUSED
@group(0) @binding(6) var<storage, read> bpart: array<vec2f>;
@group(0) @binding(7) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbeta: array<f32>;
//#else
@group(0) @binding(6) var<storage, read> coef: array<vec2f>;
//#endif
//#endif

//#if ROW_STATS
// (mean, rstd) of a row from its parts; biased variance like PyTorch.
fn row_stats(row: u32) -> vec2f {
  var s = vec3f(0.0);
  for (var p = 0u; p < P; p++) {
    s += part[row * P + p];
  }
  let d = s.y / f32(M);
  let variance = max(s.z / f32(M) - d * d, 0.0);
  return vec2f(s.x / f32(M), inverseSqrt(variance + EPS));
}
//#endif

//#if CHANNEL_SUMS
// (sum over n and parts of sum dy, of sum dy*xhat) for channel c: dbeta, dgamma.
fn channel_sums(c: u32) -> vec2f {
  var s = vec2f(0.0);
  for (var n = 0u; n < N; n++) {
    for (var p = 0u; p < P2; p++) {
      s += bpart[(n * C + c) * P2 + p];
    }
  }
  return s;
}

// (sum dxhat, sum dxhat * xhat) / M over the row: dxhat = dy * gamma, summed channel by channel.
fn row_coef(row: u32) -> vec2f {
  let n = row / G;
  let c0 = (row % G) * CPG;
  var s = vec2f(0.0);
  for (var j = 0u; j < CPG; j++) {
    var t = vec2f(0.0);
    for (var p = 0u; p < P2; p++) {
      t += bpart[(n * C + c0 + j) * P2 + p];
    }
    s += gamma[c0 + j] * t;
  }
  return s / f32(M);
}
//#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;

//#if FWD_PARTIAL
  if (id >= ROWS * P) { return; }
  let row = id / P;
  let base = row * ML;
  let k = first(x[base]);
  var s = vec3f(0.0);
  for (var e = id % P; e < ML; e += P) {
    let v = x[base + e];
    let d = v - k;
    s += vec3f(hsum(v), hsum(d), hdot(d, d));
  }
  part[id] = s;
//#endif

//#if FWD_FINAL
  if (id >= ROWS) { return; }
  let st = row_stats(id);
  mean[id] = st.x;
  rstd[id] = st.y;
//#endif

//#if FWD_NORM
  if (id >= ROWS * NCH) { return; }
  let row = id / NCH;
  let q = id % NCH;
//#if FUSED
  let st = row_stats(row);
  if (q == 0u) {
    mean[row] = st.x;
    rstd[row] = st.y;
  }
//#else
  let st = vec2f(mean[row], rstd[row]);
//#endif
  let base = row * ML;
  let c0 = (row % G) * CPG;
  for (var e = q; e < ML; e += NCH) {
//#if SPLIT
    let c = vec4u(c0) + (vec4u(4u * e) + vec4u(0u, 1u, 2u, 3u)) / HW;
    let a = st.y * vec4f(gamma[c.x], gamma[c.y], gamma[c.z], gamma[c.w]);
    y[base + e] = (x[base + e] - st.x) * a + vec4f(beta[c.x], beta[c.y], beta[c.z], beta[c.w]);
//#else
    let c = c0 + e / HWL;
    let a = st.y * gamma[c];
    y[base + e] = (x[base + e] - st.x) * a + beta[c];
//#endif
  }
//#endif

//#if BWD_PARTIAL
  if (id >= N * C * P2) { return; }
  let nc = id / P2;
  let row = nc / CPG; // (n * C + c) / CPG == n * G + c / CPG
  let m = mean[row];
  let r = rstd[row];
  let base = nc * HWL;
  var s = vec2f(0.0);
  for (var e = id % P2; e < HWL; e += P2) {
    let g = dy[base + e];
    s += vec2f(hsum(g), hdot(g, (x[base + e] - m) * r));
  }
  bpart[id] = s;
//#endif

//#if BWD_COEF
  if (id < C) {
    let s = channel_sums(id);
    dbeta[id] = s.x;
    dgamma[id] = s.y;
  } else if (id < C + ROWS) {
    coef[id - C] = row_coef(id - C);
  }
//#endif

//#if BWD_DX
  if (id >= ROWS * NCH) {
//#if FUSED
    let c = id - ROWS * NCH;
    if (c < C) {
      let s = channel_sums(c);
      dbeta[c] = s.x;
      dgamma[c] = s.y;
    }
//#endif
    return;
  }
  let row = id / NCH;
  let q = id % NCH;
//#if FUSED
  let ab = row_coef(row);
//#else
  let ab = coef[row];
//#endif
  let m = mean[row];
  let r = rstd[row];
  let base = row * ML;
  let c0 = (row % G) * CPG;
  for (var e = q; e < ML; e += NCH) {
//#if SPLIT
    let c = vec4u(c0) + (vec4u(4u * e) + vec4u(0u, 1u, 2u, 3u)) / HW;
    let gam = vec4f(gamma[c.x], gamma[c.y], gamma[c.z], gamma[c.w]);
//#else
    let gam = gamma[c0 + e / HWL];
//#endif
    let xhat = (x[base + e] - m) * r;
    dx[base + e] = r * (dy[base + e] * gam - ab.x - xhat * ab.y);
  }
//#endif
}
