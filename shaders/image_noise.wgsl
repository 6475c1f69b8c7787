// Standard normal noise for a batch of images, each image keyed on its own: image n of the batch draws
// from the Philox counter (block, SITE, stream, counter + n), so row n equals the library's
// normal(gpu, [PER], key with counter word key[3] + n, SITE) (shaders/philox.wgsl) bit for bit. A dataset
// image then sees the same noise whatever batch it lands in, when the key's counter is the batch's first
// image index. The Philox rounds and Box-Muller are included from philox.wgsl below, never copied.

@group(0) @binding(0) var<storage, read> key: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

{{PHILOX}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= {{IMAGES}}u * {{BLOCKS}}u) { return; }
  let image = id / {{BLOCKS}}u;
  let block = id % {{BLOCKS}}u;
  let w = philox(vec4u(block, {{SITE}}u, key[2], key[3] + image), vec2u(key[0], key[1]));
  let v = vec4f(boxMuller(w.x, w.y), boxMuller(w.z, w.w));
  let i = block * 4u;
  let base = image * {{PER}}u + i;
  for (var j = 0u; j < 4u; j++) {
    if (i + j < {{PER}}u) {
      out[base + j] = v[j];
    }
  }
}
