// ADDT: per-sample rows of a per-timestep table (the noise-mixing coefficients of src/addt/lambda.ts):
//   out[n, j] = table[k, j]   for j < COLS, with k = t[n] rounded and clamped into [0, T - 1]
// so that a bad timestep cannot read outside the table. One invocation per output value.

@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> ts: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= {{TOTAL}}u) { return; }
  let k = min(u32(round(max(ts[i / {{COLS}}u], 0.0))), {{T}}u - 1u);
  out[i] = table[k * {{COLS}}u + i % {{COLS}}u];
}
