// Resampling by an integer factor K over NCHW images, one output element per invocation.
// POOL:   out[p, oy, ox] = SCALE * sum of the K x K block in[p, oy*K + dy, ox*K + dx]
//         (average pooling with SCALE = 1/K^2; the backward of nearest upsampling with SCALE = 1).
// EXPAND: out[p, y, x] = SCALE * in[p, y/K, x/K] where that block exists, else 0
//         (nearest upsampling with SCALE = 1; the backward of average pooling with SCALE = 1/K^2).
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= {{TOTAL}}u) { return; }
  let x = i % {{OW}}u;
  let y = (i / {{OW}}u) % {{OH}}u;
  let plane = i / ({{OW}}u * {{OH}}u);
//#if POOL
  var s = 0.0;
  for (var dy = 0u; dy < {{K}}u; dy++) {
    let row = (plane * {{IH}}u + y * {{K}}u + dy) * {{IW}}u + x * {{K}}u;
    for (var dx = 0u; dx < {{K}}u; dx++) { s += inp[row + dx]; }
  }
  out[i] = s * {{SCALE}};
//#else
  let sy = y / {{K}}u;
  let sx = x / {{K}}u;
  if (sy < {{IH}}u && sx < {{IW}}u) {
    out[i] = inp[(plane * {{IH}}u + sy) * {{IW}}u + sx] * {{SCALE}};
  } else {
    out[i] = 0.0;
  }
//#endif
}
