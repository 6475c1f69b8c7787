// Per-sample attack losses over logits [N, K] with u32 labels [N], one invocation per row (K is small, so a
// serial loop over the row beats any cooperative scheme and needs no barriers on any adapter).
// CE:      loss = logsumexp(z) - z_y;                         backward g (softmax(z) - onehot(y)).
// DLR:     loss = -(z_y - max_{i != y} z_i) / (z_p1 - z_p3 + 1e-12) (Croce & Hein 2020; p1 >= p2 >= p3 the
//          three largest, first index on ties, as a stable descending sort gives).
// CORRECT: 1.0 where the first index of the row maximum is y, else 0.0.
// A label outside [0, K) gives NaN, so that a bad label cannot pass silently.
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
//#if BACKWARD
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
//#else
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
//#endif

const N: u32 = {{N}}u;
const K: u32 = {{K}}u;
const LOWEST: f32 = -3.4028234e38;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n = gid.x + gid.y * nwg.x * 64u;
  if (n >= N) { return; }
  let base = n * K;
  let y = labels[n];
  let nan = bitcast<f32>(0x7fc00000u);
//#if BACKWARD
  if (y >= K) {
    for (var k = 0u; k < K; k++) { out[base + k] = nan; }
    return;
  }
  let gn = g[n];
//#else
  if (y >= K) {
    out[n] = nan;
    return;
  }
//#endif
//#if CE
  var m = logits[base];
  for (var k = 1u; k < K; k++) { m = max(m, logits[base + k]); }
  var s = 0.0;
  for (var k = 0u; k < K; k++) { s += exp(logits[base + k] - m); }
//#if BACKWARD
  for (var k = 0u; k < K; k++) {
    let p = exp(logits[base + k] - m) / s;
    out[base + k] = gn * (p - select(0.0, 1.0, k == y));
  }
//#else
  out[n] = m + log(s) - logits[base + y];
//#endif
//#elif DLR
  var v1 = LOWEST; var v2 = LOWEST; var v3 = LOWEST;
  var j1 = 0u; var j2 = 0u; var j3 = 0u;
  var vo = LOWEST; var jo = 0u;
  for (var k = 0u; k < K; k++) {
    let v = logits[base + k];
    if (v > v1) {
      v3 = v2; j3 = j2; v2 = v1; j2 = j1; v1 = v; j1 = k;
    } else if (v > v2) {
      v3 = v2; j3 = j2; v2 = v; j2 = k;
    } else if (v > v3) {
      v3 = v; j3 = k;
    }
    if (k != y && v > vo) { vo = v; jo = k; }
  }
  let d = v1 - v3 + 1e-12;
  let u = logits[base + y] - vo;
//#if BACKWARD
  for (var k = 0u; k < K; k++) { out[base + k] = 0.0; }
  out[base + y] -= gn / d;
  out[base + jo] += gn / d;
  out[base + j1] += gn * u / (d * d);
  out[base + j3] -= gn * u / (d * d);
//#else
  out[n] = -u / d;
//#endif
//#elif CORRECT
  var best = 0u;
  for (var k = 1u; k < K; k++) {
    if (logits[base + k] > logits[base + best]) { best = k; }
  }
  out[n] = select(0.0, 1.0, best == y);
//#endif
}
