// Optimizer kernels over flat parameter buffers (src/nn/params.ts), bound in chunks of LEN4 vec4s (every
// parameter is padded to 64 floats, so flat buffers are whole vec4s). Hyperparameters are baked constants;
// the step count lives on the GPU (a u32) so that a step needs no upload and no new pipeline.
// One section per kernel:
//   NORM_PARTIAL  part[j] = sum of g^2 over vec4s j, j+PS, ... of the chunk
//   NORM_FINAL    norm[0] = sqrt(sum of all TOTALP parts) (Kahan-summed); with INC_STEP also step[0] += 1,
//                 so the update kernels that follow read the 1-based step t
//   ADAMW         PyTorch AdamW: decoupled weight decay, bias-corrected moments, eps added after the sqrt
//   SGD           PyTorch SGD with momentum (dampening, optional nesterov), L2 weight decay added to g
//   EMA           ema -= (1 - d) * (ema - p); the decay d is constant or follows diffusers' warmup schedule
//                 from the EMA's own counter (read before INCREMENT adds one)
//   INCREMENT     counter[0] += 1
// ADAMW and SGD scale g by min(1, MAX_NORM / (norm + 1e-6)) when CLIP (torch.nn.utils.clip_grad_norm_), and
// use the learning rate LR * min(1, (t - 1) / WARMUP) at step t when WARMUP > 0 (diffusers'
// get_constant_schedule_with_warmup, whose scheduler steps after the optimizer).

//#if NORM_PARTIAL
@group(0) @binding(0) var<storage, read> g: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
//#endif
//#if NORM_FINAL
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> norm: array<f32>;
//#if INC_STEP
@group(0) @binding(2) var<storage, read_write> step: array<u32>;
//#endif
//#endif
//#if ADAMW
@group(0) @binding(0) var<storage, read_write> p: array<vec4f>;
@group(0) @binding(1) var<storage, read> g: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> m: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> v: array<vec4f>;
@group(0) @binding(4) var<storage, read> step: array<u32>;
//#if CLIP
@group(0) @binding(5) var<storage, read> norm: array<f32>;
//#endif
//#endif
//#if SGD
@group(0) @binding(0) var<storage, read_write> p: array<vec4f>;
@group(0) @binding(1) var<storage, read> g: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> buf: array<vec4f>;
@group(0) @binding(3) var<storage, read> step: array<u32>;
//#if CLIP
@group(0) @binding(4) var<storage, read> norm: array<f32>;
//#endif
//#endif
//#if EMA
@group(0) @binding(0) var<storage, read_write> ema: array<vec4f>;
@group(0) @binding(1) var<storage, read> p: array<vec4f>;
//#if EMA_WARMUP
@group(0) @binding(2) var<storage, read> counter: array<u32>;
//#endif
//#endif
//#if INCREMENT
@group(0) @binding(0) var<storage, read_write> counter: array<u32>;
//#endif

//#if UPDATE
// The clipping factor applied to every gradient of this step.
fn clip_scale() -> f32 {
//#if CLIP
  return min(1.0, {{MAX_NORM}} / (norm[0] + 1e-6));
//#else
  return 1.0;
//#endif
}

// The learning rate at (1-based) step t.
fn learning_rate(t: f32) -> f32 {
//#if WARMUP
  return {{LR}} * min(1.0, (t - 1.0) / {{WARMUP}});
//#else
  return {{LR}};
//#endif
}
//#endif

//#if ADAMW
// 1 - b^t as -expm1(t ln b): plain 1 - pow(b, t) loses ~4 digits when b^t is near 1 (b2 = 0.999, t = 1).
fn one_minus_pow(ln_b: f32, t: f32) -> f32 {
  let a = t * ln_b;
  if (a > -0.05) {
    return -a * (1.0 + a * (0.5 + a * (1.0 / 6.0 + a * (1.0 / 24.0))));
  }
  return 1.0 - exp(a);
}
//#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;

//#if NORM_PARTIAL
  if (i >= {{PS}}u) { return; }
  var s = 0.0;
  for (var j = i; j < {{LEN4}}u; j += {{PS}}u) {
    let x = g[j];
    s += dot(x, x);
  }
  part[i] = s;
//#endif

//#if NORM_FINAL
  if (i > 0u) { return; }
  var s = 0.0;
  var lost = 0.0;
  for (var j = 0u; j < {{TOTALP}}u; j++) {
    let y = part[j] - lost;
    let t = s + y;
    lost = (t - s) - y;
    s = t;
  }
  norm[0] = sqrt(s);
//#if INC_STEP
  step[0] += 1u;
//#endif
//#endif

//#if ADAMW
  if (i >= {{LEN4}}u) { return; }
  let t = f32(step[0]);
  let lr = learning_rate(t);
  let grad = g[i] * clip_scale();
  let mi = {{B1}} * m[i] + {{ONE_MINUS_B1}} * grad;
  let vi = {{B2}} * v[i] + {{ONE_MINUS_B2}} * grad * grad;
  m[i] = mi;
  v[i] = vi;
  let denom = sqrt(vi) / sqrt(one_minus_pow({{LN_B2}}, t)) + {{EPS}};
  let decayed = p[i] * (1.0 - lr * {{WD}});
  p[i] = decayed - (lr / one_minus_pow({{LN_B1}}, t)) * mi / denom;
//#endif

//#if SGD
  if (i >= {{LEN4}}u) { return; }
  let t = f32(step[0]);
  var d = g[i] * clip_scale() + {{WD}} * p[i];
  var b = d;
  if (t > 1.0) {
    b = {{MOMENTUM}} * buf[i] + {{ONE_MINUS_DAMPENING}} * d;
  }
  buf[i] = b;
//#if NESTEROV
  d = d + {{MOMENTUM}} * b;
//#else
  d = b;
//#endif
  p[i] = p[i] - learning_rate(t) * d;
//#endif

//#if EMA
  if (i >= {{LEN4}}u) { return; }
//#if EMA_WARMUP
  // diffusers EMAModel.get_decay at optimization_step = counter + 1, as 1 - decay
  let s = f32(counter[0]) - {{UPDATE_AFTER}};
  var omd = 1.0;
  if (s > 0.0) {
    omd = clamp(pow(1.0 + s / {{INV_GAMMA}}, -{{POWER}}), {{MIN_OMD}}, {{MAX_OMD}});
  }
//#else
  let omd = {{OMD}};
//#endif
  ema[i] = ema[i] - omd * (ema[i] - p[i]);
//#endif

//#if INCREMENT
  if (i == 0u) {
    counter[0] += 1u;
  }
//#endif
}
