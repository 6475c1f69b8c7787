// Forward noising q(x_t | x_0) with one timestep per sample (DDPM training, diffusers' add_noise):
//   out[i] = sqrt(abar[t[n]]) x[i] + sqrt(1 - abar[t[n]]) noise[i],   n = i / PER_SAMPLE
// The coefficients are gathered from a table uploaded once per schedule: coef[2k] = sqrt(abar_k),
// coef[2k + 1] = sqrt(1 - abar_k). Timesteps are f32 integers, rounded and clamped into [0, T - 1] so that
// a bad value cannot read outside the table.
// Without NOISE: out[i] = sqrt(abar[t[n]]) x[i], the gradient with respect to x_0 (x = incoming gradient).
// VEC4 (PER_SAMPLE a multiple of 4): each invocation does 4 elements of one sample with vec4 loads/stores.
// ITEMS = elements (or vec4s) in all; PER_ITEM = elements (or vec4s) per sample.

@group(0) @binding(0) var<storage, read> coef: array<f32>;
@group(0) @binding(1) var<storage, read> ts: array<f32>;
//#if VEC4
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
//#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
//#endif
//#if NOISE
//#if VEC4
@group(0) @binding(3) var<storage, read> noise: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
//#else
@group(0) @binding(3) var<storage, read> noise: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
//#endif
//#else
//#if VEC4
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
//#else
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
//#endif
//#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = gid.x + gid.y * nwg.x * 64u;
  if (j >= {{ITEMS}}u) { return; }
  let k = min(u32(round(max(ts[j / {{PER_ITEM}}u], 0.0))), {{T}}u - 1u);
//#if NOISE
  out[j] = coef[2u * k] * x[j] + coef[2u * k + 1u] * noise[j];
//#else
  out[j] = coef[2u * k] * x[j];
//#endif
}
