// Fill a buffer with one 32-bit pattern (zeros, a constant, or NaN to poison outputs in tests).
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i < {{N}}u) {
    out[i] = {{BITS}}u;
  }
}
