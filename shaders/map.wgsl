// Elementwise map over N values: out[i] = EXPR(x0[i], x1[i], ...), with broadcasting done by index maps
// that the TypeScript side generates (IDX0, IDX1, ... map the output index i to each input's index).
// INPLACE writes into the first input's buffer instead of a separate output.
{{DECLS}}

fn f(i: u32) -> f32 {
{{LOADS}}
  return {{EXPR}};
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= {{N}}u) { return; }
  out[i] = f(i);
}
