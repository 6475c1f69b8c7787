/**
 * The evaluation protocol on one batch of test images, all on the GPU:
 * - clean: the defended model evaluated K times with fresh randomness;
 * - each attack setting: its noise plan (which parts of the purifier's noise are fixed), the attack on the
 *   whole batch (no readback inside a step), then the final adversarial images evaluated K times with the
 *   plan's evaluation draws (fresh randomness, the fixed parts reused in the DW settings). The first draw is
 *   the paper's protocol; the mean over K and the all-K worst case are reported too. Where the attacker
 *   fixes all randomness (DW_Both, DDIM's DW_Fwd, no purifier) EOT runs once: k equal gradients give the
 *   same sign and normalised steps;
 * - the sanity check: the undefended classifier under PGD at every (norm, eps) in use.
 * Reads: one per K-evaluation (three [N] flag vectors) and none inside an attack.
 */
import type { Gpu } from "../gpu/context.ts";
import { keep, scope, scopeAsync, type Tensor } from "../tensor.ts";
import { constant, noGrad } from "../autodiff/var.ts";
import { map } from "../ops/map.ts";
import { rngKey } from "../ops/random.ts";
import { correctFlags } from "../attack/losses.ts";
import type { AttackModel } from "../attack/model.ts";
import { pgd } from "../attack/pgd.ts";
import { apgd, autoAttackRand } from "../attack/apgd.ts";
import { attackModel, type Defense, undefended } from "../defense/defense.ts";
import { NoisePlan, streamId } from "../defense/noise_plan.ts";
import type { AttackSpec } from "./config.ts";
import { stepSize } from "./config.ts";
import type { SampleFlags } from "./stats.ts";

/** Run one attack setting on a batch; returns the adversarial images (owned by the caller). */
export async function runAttack(
  spec: AttackSpec,
  model: AttackModel,
  x: Tensor,
  labels: Tensor,
  startKey: Tensor | null,
  onStep?: (step: number) => void | Promise<void>,
): Promise<Tensor> {
  const { norm, eps, eot } = spec;
  const key = () => {
    if (!startKey) throw new Error(`${spec.attack}: random starts need a key`);
    return startKey;
  };
  switch (spec.attack) {
    case "fgsm":
    case "pgd": {
      const steps = spec.attack === "fgsm" ? 1 : spec.steps;
      const alpha = stepSize(spec);
      const randomStart = spec.randomStart;
      const startKeyIfUsed = randomStart ? key() : undefined;
      return await pgd(model, x, labels, {
        norm,
        eps,
        alpha,
        steps,
        eot,
        randomStart,
        startKey: startKeyIfUsed,
        onStep,
      });
    }
    case "apgd-ce":
    case "apgd-dlr":
    case "autoattack-rand": {
      const opts = { norm, eps, steps: spec.steps, eot, restarts: spec.restarts, startKey: key(), onStep };
      const r = spec.attack === "autoattack-rand"
        ? await autoAttackRand(model, x, labels, opts)
        : await apgd(model, x, labels, { ...opts, loss: spec.attack === "apgd-ce" ? "ce" : "dlr" });
      r.fooled.dispose();
      r.loss.dispose();
      return r.x;
    }
  }
}

/**
 * Classify x `k` times with the plan's evaluation draws (one draw when nothing varies): per sample, the
 * first draw's verdict, the fraction of draws right, and whether all were right.
 */
export async function evaluateDraws(
  defense: Defense,
  plan: NoisePlan | null,
  x: Tensor,
  labels: Tensor,
  k: number,
): Promise<SampleFlags> {
  const gpu = x.gpu, n = x.shape[0];
  const draws = defense.purifier && plan?.varies ? k : 1;
  const [first, sum, all] = [keep(gpu.empty([n])), keep(gpu.zeros([n])), keep(gpu.empty([n]))];
  gpu.fill(all, 1);
  for (let j = 0; j < draws; j++) {
    scope(() =>
      noGrad(() => {
        const noise = defense.purifier ? plan!.draw("eval") : null;
        const flags = correctFlags(gpu, defense.logits(constant(x), noise).value, labels);
        if (j === 0) gpu.copy(flags, first);
        map(gpu, "eval_sum", "x0 + x1", [sum, flags], { inplace: true });
        map(gpu, "eval_all", "min(x0, x1)", [all, flags], { inplace: true });
      })
    );
  }
  const single = Array.from(await gpu.read(first));
  const mean = Array.from(await gpu.read(sum), (v) => v / draws);
  const worst = Array.from(await gpu.read(all));
  for (const t of [first, sum, all]) t.dispose();
  return { single, mean, worst };
}

export interface BatchResult {
  clean: SampleFlags;
  rows: { flags: SampleFlags; seconds: number }[];
  /** The undefended classifier: clean, then one entry per budget (same order as `budgets`). */
  undefendedClean: SampleFlags;
  undefendedRobust: SampleFlags[];
}

/** The distinct (norm, eps) budgets of the rows, in first-use order. */
export function budgetsOf(specs: readonly AttackSpec[]): { norm: AttackSpec["norm"]; eps: number }[] {
  const seen = new Map<string, { norm: AttackSpec["norm"]; eps: number }>();
  for (const s of specs) {
    seen.set(`${s.norm}:${s.eps}`, seen.get(`${s.norm}:${s.eps}`) ?? { norm: s.norm, eps: s.eps });
  }
  return [...seen.values()];
}

export interface BatchContext {
  gpu: Gpu;
  defense: Defense;
  specs: readonly AttackSpec[];
  k: number;
  seed: number;
  batch: number;
  checkUndefended: boolean;
  /** Called after each part of the batch (clean = -1, undefended check = -2, else the row). */
  onPart?: (row: number, seconds: number) => void;
}

/** Everything for one batch of images x [N, C, H, W] in [0, 1] with u32 labels. */
export async function evaluateBatch(ctx: BatchContext, x: Tensor, labels: Tensor): Promise<BatchResult> {
  const { gpu, defense, specs, k, seed, batch } = ctx;
  const timed = async <T>(row: number, f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const r = await scopeAsync(f);
    const seconds = (performance.now() - t0) / 1000;
    ctx.onPart?.(row, seconds);
    return [r, seconds];
  };
  const planFor = (mode: AttackSpec["mode"], row: number) =>
    defense.purifier ? new NoisePlan(gpu, x.shape, defense.purifier, mode, { seed, row, batch }) : null;
  const [clean] = await timed(-1, async () => {
    const plan = planFor("fresh", 0);
    try {
      return await evaluateDraws(defense, plan, x, labels, k);
    } finally {
      plan?.dispose();
    }
  });
  const rows: BatchResult["rows"] = [];
  for (const [r, spec] of specs.entries()) {
    const row = r + 1; // stream row 0 is the clean evaluation's
    const [flags, seconds] = await timed(r, async () => {
      const plan = planFor(spec.mode, row);
      const startKey = rngKey(gpu, seed, streamId("start", row, batch), 0);
      try {
        const model = attackModel(defense, plan, spec.gradient);
        // with all randomness fixed the k EOT gradients are identical: one gives the same steps
        const run = model.stochastic ? spec : { ...spec, eot: 1 };
        const adv = await runAttack(run, model, x, labels, startKey);
        const flags = await evaluateDraws(defense, plan, adv, labels, k);
        adv.dispose();
        return flags;
      } finally {
        plan?.dispose();
      }
    });
    rows.push({ flags, seconds });
  }
  const bare = undefended(defense.classifier);
  const [[undefendedClean, undefendedRobust]] = await timed(-2, async () => {
    const cleanFlags = await evaluateDraws(bare, null, x, labels, 1);
    const robust: SampleFlags[] = [];
    if (ctx.checkUndefended) {
      for (const { norm, eps } of budgetsOf(specs)) {
        const spec: AttackSpec = {
          ...specs[0],
          attack: "pgd",
          norm,
          eps,
          alpha: null,
          steps: 20,
          eot: 1,
          randomStart: false,
        };
        const adv = await runAttack(spec, attackModel(bare, null), x, labels, null);
        robust.push(await evaluateDraws(bare, null, adv, labels, 1));
        adv.dispose();
      }
    }
    return [cleanFlags, robust] as const;
  });
  return { clean, rows, undefendedClean, undefendedRobust };
}
