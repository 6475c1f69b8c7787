/**
 * What a main-job config costs, in FLOPs, from the networks' forward FLOPs (src/eval/cost.ts convention:
 * a gradient through a checkpointed purifier step is 4 UNet forwards, an evaluation 1 per step). Printed
 * at start with the time it implies on the llvmpipe software adapter, so `--full` says up front that it is
 * a job for a real GPU.
 */
import { attackCost } from "../eval/cost.ts";
import type { AttackSpec } from "../eval/config.ts";
import { autoAttackSpecs, headlineAttack, mainAttacks } from "./compare.ts";
import { gridCount, type MainConfig, type MainDefense } from "./defaults.ts";

/**
 * FLOP/s of the main job on llvmpipe on this 2-core machine: 7.2 effective (8.2 inside the evaluations)
 * measured with a DDPM training sharing the cores; idle cores do better, so estimates err long.
 */
export const LLVMPIPE_FLOPS = 8e9;

export interface MainCost {
  /** FLOPs of the attacks and evaluations of both models, all defenses. */
  evaluation: number;
  grids: number;
  total: number;
}

export interface NetFlops {
  unet: number;
  classifier: number;
}

/** Gradients an attack computes per image (APGD: the initial point plus its steps, per run). */
function gradients(s: AttackSpec): number {
  if (s.attack === "pgd") return s.steps;
  if (s.attack === "fgsm") return 1;
  const runs = s.attack === "autoattack-rand" ? 2 : 1;
  return runs * s.restarts * (s.steps + 1);
}

/** DDIM with eta 0 has no reverse noise: only the forward noise can be fixed. */
function varies(s: AttackSpec, kind: string): boolean {
  if (s.mode === "dw_both") return false;
  return !(kind === "dp_ddim" && s.mode === "dw_fwd");
}

/**
 * FLOPs of one model's evaluation for a defense: the main settings on n images, or AutoAttack-rand on its
 * subset.
 */
export function evalFlops(
  c: MainConfig,
  nets: NetFlops,
  kind: MainDefense,
  part: "main" | "autoattack",
): number {
  const perEval = (c.nfe + 1) * nets.unet + nets.classifier;
  if (part === "autoattack") {
    return c.autoAttackN * autoAttackSpecs(c).reduce((sum, s) => sum + specFlops(c, nets, s, kind), 0);
  }
  return c.n * mainAttacks(c).reduce((sum, s) => sum + specFlops(c, nets, s, kind), c.k * perEval);
}

/** FLOPs of the grids: the headline attack on the grid images and two purifications. */
export function gridFlops(c: MainConfig, nets: NetFlops): number {
  const perEval = (c.nfe + 1) * nets.unet + nets.classifier;
  return gridCount(c) * (specFlops(c, nets, headlineAttack(c), c.defenses[0]) + 2 * perEval);
}

/** One image: the attack and the evaluations of its final image. */
function specFlops(c: MainConfig, nets: NetFlops, s: AttackSpec, kind: MainDefense): number {
  const v = varies(s, kind);
  const attack = attackCost({
    unetFlops: nets.unet,
    classifierFlops: nets.classifier,
    modelCalls: c.nfe + 1,
    gradients: gradients(s),
    eot: v ? s.eot : 1,
    k: 0,
  }).attack;
  return attack + (v ? c.k : 1) * ((c.nfe + 1) * nets.unet + nets.classifier);
}

export function estimateMainCost(c: MainConfig, nets: NetFlops): MainCost {
  // two models, the same work each
  const evaluation = c.defenses.reduce(
    (sum, kind) => sum + 2 * (evalFlops(c, nets, kind, "main") + evalFlops(c, nets, kind, "autoattack")),
    0,
  );
  const grids = gridFlops(c, nets);
  return { evaluation, grids, total: evaluation + grids };
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (Math.round(s) < 60) return `${Math.round(s)} s`;
  const minutes = Math.round(s / 60), hours = Math.round(s / 3600);
  if (minutes < 60) return `${minutes} min`;
  if (hours < 24) return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
}

/** "3.4 TFLOP: about 7 min at 8 GFLOP/s (llvmpipe, idle)" */
export function describeCost(cost: MainCost): string {
  const t = cost.total;
  const amount = t >= 1e12 ? `${(t / 1e12).toFixed(1)} TFLOP` : `${(t / 1e9).toFixed(1)} GFLOP`;
  return `${amount} of attacks and evaluations: about ${formatDuration(t / LLVMPIPE_FLOPS)} at ` +
    `${
      LLVMPIPE_FLOPS / 1e9
    } GFLOP/s (llvmpipe on this 2-core machine; a real GPU is orders of magnitude faster)`;
}
