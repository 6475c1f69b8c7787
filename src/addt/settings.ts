/**
 * The settings of an ADDT fine-tuning run: a DDPM run's settings (the schedule, AdamW, EMA, dropout, the
 * loop's intervals: so the run folder is a DDPM run folder that `addt eval --ddpm` loads as is) plus the
 * source DDPM folder, the guidance classifier folder and the method's own settings. Defaults follow the
 * paper and the authors' code: AdamW lr 2e-4 constant after 500 warmup steps, betas (0.95, 0.999), weight
 * decay 1e-6, eps 1e-8, clip 1.0, EMA up to 0.9999 (inv_gamma 1, power 0.75), dropout 0.1, lambda_unit
 * 0.03, lambda_max 0.3, K = 5.
 */
import * as E from "fp-ts/Either.js";
import { ddpmDefaults, type DdpmSettings, validateSettings } from "../train/settings.ts";
import { TrainSetupError } from "../train/errors.ts";
import { standardEps } from "../eval/config.ts";
import type { MixSpec } from "./lambda.ts";
import type { Objective } from "./objective.ts";

export const METHODS = ["addt", "clean", "mse", "linf"] as const;
/** addt: CGPO + RBGM with the classifier; clean: plain DDPM fine-tuning; mse: CGPO guided by the MSE of the
 * prediction (no classifier); linf: ADDT_linf, a pixel-space Linf PGD perturbation. */
export type FinetuneMethod = typeof METHODS[number];

export interface FinetuneSettings extends DdpmSettings {
  /** The fine-tuning run's length (steps, not epochs). */
  steps: number;
  /** The source DDPM run folder: its EMA weights start the model and the EMA; its schedule is kept. */
  ddpm: string;
  /** The guidance classifier's run folder (required by addt and linf). */
  classifier: string | null;
  method: FinetuneMethod;
  lambdaUnit: number;
  lambdaMax: number;
  /** CGPO iterations K (PGD steps for linf). */
  cgpoSteps: number;
  /** ADDT_linf's budget in [0, 1] pixel units (PGD step: half of it); null: the dataset's attack eps. */
  linfEps: number | null;
  /** Random horizontal flips; null: on for CIFAR-10 (as the authors trained), off otherwise. */
  flip: boolean | null;
  /** Dropout in the CGPO / PGD passes of the UNet (the authors' code: on, the model is in train mode). */
  guidanceDropout: boolean;
}

/** The fine-tuning defaults; `out` is the run folder. */
export function finetuneDefaults(out: string, overrides: Partial<FinetuneSettings> = {}): FinetuneSettings {
  return {
    ...ddpmDefaults(out),
    steps: 1000,
    epochs: null,
    lr: 2e-4,
    warmup: 500,
    weightDecay: 1e-6,
    gradClip: 1,
    adamBetas: [0.95, 0.999],
    adamEps: 1e-8,
    emaMaxDecay: 0.9999,
    emaInvGamma: 1,
    emaPower: 0.75,
    dropout: 0.1,
    logEvery: 25,
    checkpointEvery: 250,
    ddpm: "",
    classifier: null,
    method: "addt",
    lambdaUnit: 0.03,
    lambdaMax: 0.3,
    cgpoSteps: 5,
    linfEps: null,
    flip: null,
    guidanceDropout: true,
    ...overrides,
  };
}

/** Whether a method needs the guidance classifier. */
export const needsClassifier = (m: FinetuneMethod): boolean => m === "addt" || m === "linf";

/** The guidance objective of a method (null: no guidance passes). */
export function objectiveOf(m: FinetuneMethod): Objective | null {
  return m === "clean" ? null : m === "mse" ? "mse" : "classifier";
}

/** How a method mixes its guided noise into the forward process. */
export function mixSpecOf(s: FinetuneSettings): MixSpec {
  const kind = s.method === "clean" ? "plain" : s.method === "linf" ? "linf" : "lambda";
  return { kind, lambdaUnit: s.lambdaUnit, lambdaMax: s.lambdaMax };
}

/** ADDT_linf's budget in [0, 1] pixel units. */
export const linfBudget = (s: FinetuneSettings): number => s.linfEps ?? standardEps(s.dataset, "linf");

/** Flips on for this run? */
export const flipOf = (s: FinetuneSettings): boolean => s.flip ?? s.dataset === "cifar10";

const bad = (message: string) => E.left(new TrainSetupError(message));

/** The DDPM checks plus the fine-tuning's own; messages name the flags as the CLI spells them. */
export function validateFinetune(s: FinetuneSettings): E.Either<TrainSetupError, FinetuneSettings> {
  const base = validateSettings(s);
  if (E.isLeft(base)) return base;
  if (!s.ddpm) return bad("--ddpm is required: the DDPM run folder to fine-tune");
  if (s.steps === null || !(Number.isInteger(s.steps) && s.steps >= 1)) {
    return bad("--steps must be a positive integer (fine-tuning counts steps, not epochs)");
  }
  if (!METHODS.includes(s.method)) {
    return bad(`--method must be one of ${METHODS.join(", ")}, got ${s.method}`);
  }
  if (needsClassifier(s.method) && !s.classifier) {
    return bad(`--classifier is required for --method ${s.method}: the guidance classifier's run folder`);
  }
  if (!(s.lambdaUnit >= 0 && Number.isFinite(s.lambdaUnit))) {
    return bad(`--lambda-unit must be a number >= 0, got ${s.lambdaUnit}`);
  }
  if (!(s.lambdaMax >= 0 && s.lambdaMax <= 1)) {
    return bad(`--lambda-max must be in [0, 1], got ${s.lambdaMax}`);
  }
  if (!(Number.isInteger(s.cgpoSteps) && s.cgpoSteps >= 1 && s.cgpoSteps <= 1000)) {
    return bad(`--cgpo-steps must be an integer in [1, 1000], got ${s.cgpoSteps}`);
  }
  if (s.linfEps !== null && !(s.linfEps >= 0 && s.linfEps <= 1)) {
    return bad(`--linf-eps must be in [0, 1] (pixel units), got ${s.linfEps}`);
  }
  return E.right(s);
}
