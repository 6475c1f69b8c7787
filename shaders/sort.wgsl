// Per-row sort of f32 values as a bitonic network over (key, index) pairs, rows padded to P = 2^p.
//
// A row sort is a sequence of passes (one dispatch each, no barriers: barriers are slow on llvmpipe and
// global passes are memory-bound on real GPUs). In a pass every invocation owns E <= 16 elements at
// positions base + m * LS (m < E) that are closed under the pass's strides, keeps them in registers and
// runs the unrolled compare-exchanges (NET) generated from the pass's constants:
//   the first pass sorts runs of E (stages 2..E); each later stage K either does strides J..LS across
//   the row (up to 4 strides per pass) or its last strides E/2..1 on contiguous runs.
// FIRST reads the input and pads; LAST writes the outputs; the others work in place on `work`.
// The first pass bakes its stages. Every later pass runs the same network for a given E, so its stage K
// and low stride LS come from `prm`, one entry of a small per-row-length table (bound at a 256-byte
// offset): a row of 4096 needs 6 pipelines instead of 21.
//
// Order: keys are f32 bits mapped to u32 so that unsigned order is numeric order, -0 == +0, and every
// NaN maps to 0xffffffff (after +inf). Ties go by original index (stable), so NaNs come last in index
// order. Padding is (0xffffffff, p >= L): after every real element, NaN included.

//#if GATHER
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

// out[r, i] = src[r, idx[r, i]], bits copied exactly; an index >= M gives NaN.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= {{N}}u) { return; }
  let j = idx[i];
  out[i] = select(0x7fc00000u, src[(i / {{L}}u) * {{M}}u + min(j, {{M}}u - 1u)], j < {{M}}u);
}
//#else
//#if !FIRST
@group(0) @binding(0) var<storage, read> prm: array<u32>; // K, LS, log2 LS
//#endif
//#if HAS_X
@group(0) @binding({{B_X}}) var<storage, read> x: array<u32>;
//#endif
//#if HAS_WORK
@group(0) @binding({{B_WORK}}) var<storage, read_write> work: array<vec2u>;
//#endif
//#if HAS_VALUES
@group(0) @binding({{B_VALUES}}) var<storage, read_write> values: array<u32>;
//#endif
//#if HAS_INDICES
@group(0) @binding({{B_INDICES}}) var<storage, read_write> indices: array<u32>;
//#endif
//#if HAS_RANK
@group(0) @binding({{B_RANK}}) var<storage, read_write> rank: array<u32>;
//#endif

fn orderKey(bits: u32) -> u32 {
  if ((bits & 0x7fffffffu) > 0x7f800000u) { return 0xffffffffu; }
  let b = select(bits, 0u, bits == 0x80000000u);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// (key, index) order; indices are unique within a row, so pairs are never equal.
fn lt(a: vec2u, b: vec2u) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}

fn load(row: u32, p: u32) -> vec2u {
//#if FIRST
  if (p >= {{L}}u) { return vec2u(0xffffffffu, p); }
  return vec2u(orderKey(x[row * {{L}}u + p]), p);
//#else
  return work[row * {{P}}u + p];
//#endif
}

fn store(row: u32, p: u32, v: vec2u) {
//#if LAST
  // the first L sorted positions hold exactly the real elements (padding sorts last)
  if (p >= {{L}}u) { return; }
  let o = row * {{L}}u;
//#if HAS_VALUES
  values[o + p] = x[o + v.y];
//#endif
//#if HAS_INDICES
  indices[o + p] = v.y;
//#endif
//#if HAS_RANK
  rank[o + v.y] = p;
//#endif
//#else
  work[row * {{P}}u + p] = v;
//#endif
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * 64u;
  if (t >= {{TOTAL}}u) { return; }
  let row = t / {{GROUPS}}u;
  let g = t % {{GROUPS}}u;
//#if FIRST
  let k = {{K}}u;
  let ls = 1u;
  let lsb = 0u;
//#else
  let k = prm[0];
  let ls = prm[1];
  let lsb = prm[2];
//#endif
  // insert S zero bits at bit log2(LS): the group's positions are base + m * LS
  let base = ((g >> lsb) << (lsb + {{S}}u)) | (g & (ls - 1u));
  // direction of the pass's widest stage: ascending where the position's K bit is clear
  let asc = (base & k) == 0u;
  var v: array<vec2u, {{E}}>;
{{LOADS}}
{{NET}}
{{STORES}}
}
//#endif
