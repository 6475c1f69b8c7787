// Elementwise map over N values: out[i] = f(i, x0, x1, ...) where input k is read at an index map of i
// that the TypeScript side generates (identity, or a broadcast such as per-channel or per-sample).
// INPLACE writes into the first input's buffer instead of a separate output.
// VEC4 (N a multiple of 4, every identity input read as vec4): each invocation does 4 outputs with one
// vec4 load per identity input and one vec4 store (2.5x the bandwidth of scalar loads on llvmpipe);
// broadcast inputs stay scalar loads through their index map.
{{DECLS}}

fn f(i: u32, {{PARAMS}}) -> f32 {
  return {{EXPR}};
}
{{LOADERS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = gid.x + gid.y * nwg.x * 64u;
//#if VEC4
  if (j >= {{N}}u / 4u) { return; }
  let i = j * 4u;
{{LOADS}}
  out[j] = vec4<f32>(f(i, {{ARGS_X}}), f(i + 1u, {{ARGS_Y}}), f(i + 2u, {{ARGS_Z}}), f(i + 3u, {{ARGS_W}}));
//#else
  if (j >= {{N}}u) { return; }
  let i = j;
{{LOADS}}
  out[j] = f(i, {{ARGS}});
//#endif
}
