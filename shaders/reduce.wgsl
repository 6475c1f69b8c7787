// One pass of a barrier-free reduction. The input is viewed as O outputs times R reduced elements; the
// element (o, r) lives at base(o) + at(r), offsets generated from the shape and the reduced axes. R is
// split into P chunks of about CHUNK elements; invocation t = (o, p) combines its chunk serially and
// writes the partial out[o * P + p]. With P > 1 the host runs another pass over the [O, P] partials.
// Serial chunks of CHUNK elements keep float32 sums accurate (error grows with the chunk, not with R).
//
// Variants: STRIDED (real GPUs) gives invocation p the elements p, p + P, p + 2P, ... so that neighbouring
// invocations read neighbouring addresses (coalesced); otherwise (llvmpipe) each invocation reads one
// contiguous run, which streams through the cache line by line. O_FAST puts neighbouring invocations on
// neighbouring outputs, for layouts where the kept axis is the innermost one (a sum over leading axes).
// PRE maps each input element v (and, with AUX, the per-output value a = aux[o]) in the first pass;
// POST maps the result in the last pass.
@group(0) @binding(0) var<storage, read> x: array<f32>;
//#if AUX
@group(0) @binding(1) var<storage, read> aux: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
//#else
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
//#endif

fn base(o: u32) -> u32 {
  return {{OUT_OFFSET}};
}

fn at(r: u32) -> u32 {
  return {{RED_OFFSET}};
}

fn pre(v: f32, a: f32) -> f32 {
  return {{PRE}};
}

fn combine(acc: f32, v: f32) -> f32 {
  return {{COMBINE}};
}

fn post(acc: f32) -> f32 {
  return {{POST}};
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * 64u;
  if (t >= {{O}}u * {{P}}u) { return; }
//#if O_FAST
  let o = t % {{O}}u;
  let p = t / {{O}}u;
//#else
  let o = t / {{P}}u;
  let p = t % {{P}}u;
//#endif
  let b = base(o);
//#if AUX
  let a = aux[o];
//#else
  let a = 0.0;
//#endif
  var acc = {{INIT}};
//#if STRIDED
  for (var r = p; r < {{R}}u; r += {{P}}u) {
    acc = combine(acc, pre(x[b + at(r)], a));
  }
//#else
  let lo = p * {{CHUNK}}u;
  let hi = min(lo + {{CHUNK}}u, {{R}}u);
  for (var r = lo; r < hi; r++) {
    acc = combine(acc, pre(x[b + at(r)], a));
  }
//#endif
  out[o * {{P}}u + p] = post(acc);
}
