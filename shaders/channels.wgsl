// Channel gather over [N, C, S] layouts (S = H*W, or 1 for [N, C]): every channel of the output range
// [LO, HI) is either copied from a channel of one input segment or, outside all segments, set to zero.
// concat = one segment per input; slice = one segment; pad (slice's backward) = one segment plus zeros.
// The TypeScript side generates DECLS (one read binding per segment, then `out`) and SELECT (a chain of
// `if (c < END_k) { v = in_k[...]; }` branches, segments in channel order).
{{DECLS}}

const N = {{N}}u;
const S = {{S}}u;
const COUT = {{COUT}}u;
const LO = {{LO}}u;
const WIDTH = {{WIDTH}}u; // HI - LO

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= N * WIDTH * S) { return; }
  let s = i % S;
  let c = LO + (i / S) % WIDTH;
  let n = i / (S * WIDTH);
  var v = 0.0;
{{SELECT}}
  out[(n * COUT + c) * S + s] = v;
}
