/**
 * A defended classifier: the classifier alone ("none"), or the classifier behind a diffusion purifier
 * (DP_DDPM, DP_DDIM). `logits(x, noise, gradient)` gives the logits with an explicit noise set and either
 * the exact gradient (through the whole purifier) or BPDA's (the purifier is the identity in the backward
 * pass: the weak baseline that shows how much a wrong gradient overstates robustness).
 */
import { constant, noGrad, record, type Var } from "../autodiff/var.ts";
import type { NoiseSet } from "../diffusion/sampler.ts";
import type { AttackModel } from "../attack/model.ts";
import type { Classifier } from "./networks.ts";
import type { DiffusionPurifier } from "./purifier.ts";
import type { NoisePlan } from "./noise_plan.ts";

export type GradientKind = "exact" | "bpda";

export interface Defense {
  readonly name: string;
  readonly classifier: Classifier;
  /** null: undefended. */
  readonly purifier: DiffusionPurifier | null;
  /** Logits of x in [0, 1]; `noise` is required exactly when there is a purifier. */
  logits(x: Var, noise: NoiseSet | null, gradient?: GradientKind): Var;
}

export function undefended(classifier: Classifier, name = "none"): Defense {
  return { name, classifier, purifier: null, logits: (x) => classifier(x) };
}

export function purified(classifier: Classifier, purifier: DiffusionPurifier, name: string): Defense {
  return {
    name,
    classifier,
    purifier,
    logits(x: Var, noise: NoiseSet | null, gradient: GradientKind = "exact"): Var {
      if (!noise) throw new Error(`${name}: the purifier needs a noise set`);
      if (gradient === "exact") return classifier(purifier.purify(x, noise));
      // BPDA: the purified image without a graph, recorded as a function of x whose derivative is 1
      const out = noGrad(() => purifier.purify(constant(x.value), noise)).value;
      return classifier(record("bpda_identity", out, [x], (g) => [g]));
    },
  };
}

/** The defense as an attack sees it: every call draws the plan's next attack noise set. */
export function attackModel(
  defense: Defense,
  plan: NoisePlan | null,
  gradient: GradientKind = "exact",
): AttackModel {
  if (defense.purifier && !plan) {
    throw new Error(`${defense.name}: an attack on a purifier needs a noise plan`);
  }
  return {
    logits: (x: Var) => defense.logits(x, defense.purifier ? plan!.draw("attack") : null, gradient),
    stochastic: defense.purifier !== null && plan!.varies,
  };
}
