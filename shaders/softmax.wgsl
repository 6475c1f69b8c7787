// Row-wise kernels over the last axis (ROWS rows of COLS values): softmax, log-softmax, their backward
// passes, cross-entropy (per sample, and its backward) and a mean. Each row is one reduction (a pair p:
// running max and sum of exp for the *_FWD kinds, a plain sum otherwise) followed by a write pass.
// Two variants from this one template:
// - WG_REDUCE (real GPUs): one workgroup of WG invocations per row, partial results combined in
//   workgroup memory.
// - otherwise (llvmpipe): one invocation per row and no barriers (each is a coroutine switch there).
// The max starts at the lowest finite f32 instead of -inf so that combining empty partials gives 0, not NaN.

const ROWS = {{ROWS}}u;
const COLS = {{COLS}}u;
const WG = {{WG}}u;
const LOWEST = -3.4028234e38;

//#if SOFTMAX
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
//#elif LOG_SOFTMAX
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
//#elif SOFTMAX_BWD
@group(0) @binding(0) var<storage, read> Y: array<f32>;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read_write> DX: array<f32>;
//#elif LOG_SOFTMAX_BWD
@group(0) @binding(0) var<storage, read> Y: array<f32>;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read_write> DX: array<f32>;
//#elif CE_FWD
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> LABEL: array<u32>;
@group(0) @binding(2) var<storage, read_write> LOSS: array<f32>;
//#elif CE_BWD
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> LABEL: array<u32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> DX: array<f32>;
//#elif MEAN
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
//#endif

// The reduction of this invocation's share of a row: columns first, first + STEP, ... of the row at base.
//#if ONLINE
// p = (max, sum of exp(x - max)): a max pass, then a sum pass (one exp per element, the values are in
// cache); partials from several invocations merge by rescaling both sums to the larger max
fn combine(a: vec2f, b: vec2f) -> vec2f {
  let m = max(a.x, b.x);
  return vec2f(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}
fn reduceShare(base: u32, first: u32, step: u32) -> vec2f {
  var m = LOWEST;
  for (var j = first; j < COLS; j += step) { m = max(m, X[base + j]); }
  var s = 0.0;
  for (var j = first; j < COLS; j += step) { s += exp(X[base + j] - m); }
  return vec2f(m, s);
}
//#else
fn combine(a: vec2f, b: vec2f) -> vec2f { return a + b; }
fn reduceShare(base: u32, first: u32, step: u32) -> vec2f {
  var s = 0.0;
  for (var j = first; j < COLS; j += step) {
//#if SOFTMAX_BWD
    s += DY[base + j] * Y[base + j];
//#elif LOG_SOFTMAX_BWD
    s += DY[base + j];
//#else
    s += X[base + j];
//#endif
  }
  return vec2f(s, 0.0);
}
//#endif

// The write pass for column j of `row` (element i), given the row's reduction p.
fn emit(row: u32, j: u32, i: u32, p: vec2f) {
//#if SOFTMAX
  Y[i] = exp(X[i] - p.x) / p.y;
//#elif LOG_SOFTMAX
  Y[i] = X[i] - p.x - log(p.y);
//#elif SOFTMAX_BWD
  DX[i] = Y[i] * (DY[i] - p.x);
//#elif LOG_SOFTMAX_BWD
  DX[i] = DY[i] - exp(Y[i]) * p.x;
//#elif CE_BWD
  let label = LABEL[row];
//#if PER_SAMPLE
  let g = G[row];
//#else
  let g = G[0] / f32(ROWS);
//#endif
  DX[i] = (exp(X[i] - p.x) / p.y - select(0.0, 1.0, j == label)) * g;
//#endif
}

// Values written once per row (lane 0).
fn finish(row: u32, p: vec2f) {
//#if CE_FWD
  let label = LABEL[row];
  if (label < COLS) {
    LOSS[row] = p.x + log(p.y) - X[row * COLS + label];
  } else {
    LOSS[row] = bitcast<f32>(0x7fc00000u); // an out-of-range label gives NaN, never a silent number
  }
//#elif MEAN
  Y[0] = p.x / f32(COLS);
//#endif
}

//#if WG_REDUCE
var<workgroup> partial: array<vec2f, WG>;

@compute @workgroup_size({{WG}})
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lane: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= ROWS) { return; } // the same for the whole workgroup
  let base = row * COLS;
  var p = reduceShare(base, lane, WG);
  partial[lane] = p;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { partial[lane] = combine(partial[lane], partial[lane + s]); }
    workgroupBarrier();
  }
  p = partial[0];
  for (var j = lane; j < COLS; j += WG) { emit(row, j, base + j, p); }
  if (lane == 0u) { finish(row, p); }
}
//#else
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * WG;
  if (row >= ROWS) { return; }
  let base = row * COLS;
  let p = reduceShare(base, 0u, 1u);
  for (var j = 0u; j < COLS; j++) { emit(row, j, base + j, p); }
  finish(row, p);
}
//#endif
