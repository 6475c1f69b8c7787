// Counter-based random numbers: Philox4x32-10 (Salmon et al. 2011, as in Random123 / cuRAND / PyTorch).
//
// Modes (one per variant): BITS (raw u32 words), UNIFORM, NORMAL, BERNOULLI, ADVANCE (the key bump).
// The key is a runtime input, a u32[4] tensor (seedLo, seedHi, stream, counter), so that a loop of draws
// compiles nothing and uploads nothing. Element i of an N-element draw is word i % 4 of
//   philox(counter = (i / 4, SITE, stream, counter), key = (seedLo, seedHi)).
// Each invocation computes one Philox block and writes its (up to) 4 outputs.

//#if ADVANCE
@group(0) @binding(0) var<storage, read_write> key: array<u32>;

@compute @workgroup_size(1)
fn main() {
  key[3] = key[3] + {{BY}}u;
}
//#else
@group(0) @binding(0) var<storage, read> key: array<u32>;
//#if BITS
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
//#else
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
//#endif

// High 32 bits of a 32x32-bit product from 16-bit halves (WGSL has no 64-bit integers); every partial
// product and the middle sum fit in 32 bits.
fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let ll = al * bl;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn philox(counter: vec4u, k0: vec2u) -> vec4u {
  var x = counter;
  var k = k0;
  for (var r = 0u; r < 10u; r++) {
    if (r > 0u) {
      k += vec2u(0x9E3779B9u, 0xBB67AE85u); // the Weyl key schedule, bumped before rounds 2..10
    }
    let hi0 = mulhi(0xD2511F53u, x.x);
    let lo0 = 0xD2511F53u * x.x;
    let hi1 = mulhi(0xCD9E8D57u, x.z);
    let lo1 = 0xCD9E8D57u * x.z;
    x = vec4u(hi1 ^ x.y ^ k.x, lo1, hi0 ^ x.w ^ k.y, lo0);
  }
  return x;
}

// The top 24 bits as a float in [0, 1 - 2^-24]: exact in f32, never 1.0.
fn unit(w: u32) -> f32 {
  return f32(w >> 8u) * 5.9604644775390625e-8;
}

// Box-Muller on a pair: the radius uses (0, 1] (never log(0)), the angle stays in [-pi, pi) where GPU
// sin/cos are most accurate. |z| <= sqrt(2 * 24 ln 2) ~ 5.77.
fn boxMuller(a: u32, b: u32) -> vec2f {
  let u = (f32(a >> 8u) + 1.0) * 5.9604644775390625e-8;
  let theta = unit(b) * 6.283185307179586 - 3.141592653589793;
  let r = sqrt(-2.0 * log(u));
  return vec2f(r * cos(theta), r * sin(theta));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let block = gid.x + gid.y * nwg.x * 64u;
  if (block >= {{BLOCKS}}u) { return; }
  let w = philox(vec4u(block, {{SITE}}u, key[2], key[3]), vec2u(key[0], key[1]));
//#if BITS
  let v = w;
//#elif UNIFORM
  let v = vec4f(unit(w.x), unit(w.y), unit(w.z), unit(w.w));
//#elif NORMAL
  let v = vec4f(boxMuller(w.x, w.y), boxMuller(w.z, w.w));
//#elif BERNOULLI
  // u < p exactly as integers: (w >> 8) < ceil(p * 2^24)
  let hit = (w >> vec4u(8u)) < vec4u({{THRESHOLD}}u);
  let v = select(vec4f({{MISS}}), vec4f({{HIT}}), hit);
//#endif
  let i = block * 4u;
  if (i + 3u < {{N}}u) {
    out[i] = v.x;
    out[i + 1u] = v.y;
    out[i + 2u] = v.z;
    out[i + 3u] = v.w;
  } else {
    for (var j = 0u; i + j < {{N}}u; j++) {
      out[i + j] = v[j];
    }
  }
}
//#endif
