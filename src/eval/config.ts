/**
 * What an evaluation runs: the defended model (classifier and diffusion weights, t*, NFE, sampler), the
 * test images, and one or more attack settings ("rows" of the report), all on the same images. Defaults
 * follow the paper's MNIST conventions; step sizes default to its ratios (Linf eps / 4 as 2/255 is to 8/255,
 * L2 eps / 5 as 0.1 is to 0.5). A config is plain JSON (the `--config FILE` form) and is validated here.
 */
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";
import { type DatasetName, DATASETS } from "../train/settings.ts";
import { NOISE_MODES, type NoiseMode } from "../defense/noise_plan.ts";
import type { GradientKind } from "../defense/defense.ts";
import type { Norm } from "../attack/projection.ts";

export const DEFENSES = ["none", "dp_ddpm", "dp_ddim"] as const;
export type DefenseName = typeof DEFENSES[number];
export const ATTACKS = ["fgsm", "pgd", "apgd-ce", "apgd-dlr", "autoattack-rand"] as const;
export type AttackName = typeof ATTACKS[number];
export const NORMS = ["linf", "l2"] as const;
export const GRADIENTS = ["exact", "bpda"] as const;

/** A bad evaluation config or input (one line for the user). */
export class EvalConfigError extends Error {
  override readonly name = "EvalConfigError";
}

export interface AttackSpec {
  attack: AttackName;
  norm: Norm;
  eps: number;
  /** Step size; null: eps / 4 (Linf) or eps / 5 (L2). APGD sets its own. */
  alpha: number | null;
  /** Iterations (FGSM: 1). */
  steps: number;
  /** Gradient draws per step. */
  eot: number;
  /** PGD: start from a random point of the ball (APGD always does). */
  randomStart: boolean;
  /** Which parts of the purifier's noise the attacker knows and holds fixed. */
  mode: NoiseMode;
  gradient: GradientKind;
  /** APGD runs. */
  restarts: number;
}

export interface EvalConfig {
  dataset: DatasetName;
  dataDir: string | null;
  /** A classifier training run folder (run.json, model.safetensors). */
  classifier: string;
  /** A DDPM training run folder (run.json, ema.safetensors or model.safetensors); not used by "none". */
  ddpm: string | null;
  /** Use the DDPM run's EMA weights when it has them (default true). */
  ema: boolean;
  defense: DefenseName;
  tStar: number;
  /** Reverse strides (the paper's NFE; the UNet runs nfe + 1 times per purification). */
  nfe: number;
  attacks: AttackSpec[];
  /** Evaluations of each final image with fresh randomness. */
  k: number;
  /** Test images, from `offset`. */
  n: number;
  offset: number;
  batchSize: number;
  seed: number;
  /** Folder for report.json and report.md (null: print only). */
  out: string | null;
  /** Attack the undefended classifier at every (norm, eps) too (the sanity check). */
  checkUndefended: boolean;
  /**
   * Recompute each reverse step in the attack's backward pass (gradient checkpointing; default true). Off
   * keeps every step's activations instead: the same gradient bit for bit, one UNet forward less per step
   * (about 1.4x faster attacks), memory growing with NFE x batch size.
   */
  checkpoint: boolean;
}

/** The standard budget of a dataset and norm. */
export function standardEps(dataset: DatasetName, norm: Norm): number {
  if (dataset === "cifar10") return norm === "linf" ? 8 / 255 : 0.5;
  return norm === "linf" ? 0.3 : 2.0;
}

export function attackDefaults(dataset: DatasetName, overrides: Partial<AttackSpec> = {}): AttackSpec {
  const norm = overrides.norm ?? "linf", attack = overrides.attack ?? "pgd";
  const aa = attack === "autoattack-rand", apgd = aa || attack.startsWith("apgd");
  return {
    attack,
    norm,
    eps: standardEps(dataset, norm),
    alpha: null,
    // AutoAttack's "rand" version: 100 iterations, EOT 20; PGD-20 otherwise
    steps: apgd ? 100 : attack === "fgsm" ? 1 : 20,
    eot: aa ? 20 : 1,
    randomStart: false,
    mode: "fresh",
    gradient: "exact",
    restarts: 1,
    ...overrides,
  };
}

export function evalDefaults(overrides: Partial<EvalConfig> = {}): EvalConfig {
  const dataset = overrides.dataset ?? "mnist";
  return {
    dataset,
    dataDir: null,
    classifier: "",
    ddpm: null,
    ema: true,
    defense: "dp_ddpm",
    tStar: 100,
    nfe: 10,
    attacks: [attackDefaults(dataset)],
    k: 20,
    n: 256,
    offset: 0,
    batchSize: 32,
    seed: 0,
    out: null,
    checkUndefended: true,
    checkpoint: true,
    ...overrides,
  };
}

/** The step size an attack uses. */
export function stepSize(a: AttackSpec): number {
  if (a.attack === "fgsm") return a.eps;
  return a.alpha ?? (a.norm === "linf" ? a.eps / 4 : a.eps / 5);
}

const MODE_LABELS: Record<NoiseMode, string> = {
  fresh: "",
  dw_fwd: "DW_Fwd",
  dw_rev: "DW_Rev",
  dw_both: "DW_Both",
};

/** A short name of an attack setting, e.g. "PGD-20 EOT-10 linf 0.3 DW_Both". */
export function attackLabel(a: AttackSpec): string {
  const name = a.attack === "pgd"
    ? `PGD-${a.steps}`
    : a.attack === "fgsm"
    ? "FGSM"
    : a.attack === "autoattack-rand"
    ? `AutoAttack-rand (APGD-${a.steps})`
    : `${a.attack.toUpperCase()}-${a.steps}`;
  const parts = [name, `EOT-${a.eot}`, a.norm === "linf" ? "Linf" : "L2", String(+a.eps.toPrecision(4))];
  if (a.mode !== "fresh") parts.push(MODE_LABELS[a.mode]);
  if (a.gradient === "bpda") parts.push("BPDA");
  if (a.randomStart && (a.attack === "pgd" || a.attack === "fgsm")) parts.push("rand-start");
  return parts.join(" ");
}

type Check = E.Either<EvalConfigError, void>;
const ok: Check = E.right(undefined);
const bad = (msg: string): Check => E.left(new EvalConfigError(msg));
const posInt = (v: unknown) => Number.isInteger(v) && (v as number) >= 1;

function checkAttack(a: AttackSpec, i: number): Check {
  const at = `attacks[${i}] (${a.attack})`;
  if (!(ATTACKS as readonly string[]).includes(a.attack)) {
    return bad(`${at}: unknown attack (${ATTACKS.join(" | ")})`);
  }
  if (!(NORMS as readonly string[]).includes(a.norm)) return bad(`${at}: norm must be linf or l2`);
  if (!(a.eps >= 0 && Number.isFinite(a.eps))) return bad(`${at}: eps ${a.eps} must be a number >= 0`);
  if (a.alpha !== null && !(a.alpha > 0 && Number.isFinite(a.alpha))) {
    return bad(`${at}: alpha ${a.alpha} must be > 0`);
  }
  if (!posInt(a.steps)) return bad(`${at}: steps ${a.steps} must be a positive integer`);
  if (!posInt(a.eot)) return bad(`${at}: eot ${a.eot} must be a positive integer`);
  if (!posInt(a.restarts)) return bad(`${at}: restarts ${a.restarts} must be a positive integer`);
  if (!(NOISE_MODES as readonly string[]).includes(a.mode)) {
    return bad(`${at}: mode must be ${NOISE_MODES.join(" | ")}`);
  }
  if (!(GRADIENTS as readonly string[]).includes(a.gradient)) {
    return bad(`${at}: gradient must be exact or bpda`);
  }
  if (typeof a.randomStart !== "boolean") return bad(`${at}: randomStart must be true or false`);
  return ok;
}

/** The config if it is consistent, else the first problem found. */
export function validateEvalConfig(c: EvalConfig): E.Either<EvalConfigError, EvalConfig> {
  const checks: (() => Check)[] = [
    () =>
      (DATASETS as readonly string[]).includes(c.dataset)
        ? ok
        : bad(`dataset must be ${DATASETS.join(" | ")}`),
    () =>
      (DEFENSES as readonly string[]).includes(c.defense)
        ? ok
        : bad(`defense must be ${DEFENSES.join(" | ")}`),
    () => c.classifier ? ok : bad("give the classifier's training run folder (--classifier)"),
    () =>
      c.defense === "none" || c.ddpm ? ok : bad(`${c.defense} needs the DDPM training run folder (--ddpm)`),
    () => posInt(c.tStar) ? ok : bad(`t* ${c.tStar} must be a positive integer`),
    () =>
      posInt(c.nfe) && c.tStar % c.nfe === 0
        ? ok
        : bad(`NFE ${c.nfe} must be a positive divisor of t* ${c.tStar}`),
    () => posInt(c.k) ? ok : bad(`K ${c.k} must be a positive integer`),
    () => posInt(c.n) ? ok : bad(`n ${c.n} must be a positive integer`),
    () => Number.isInteger(c.offset) && c.offset >= 0 ? ok : bad(`offset ${c.offset} must be >= 0`),
    () => posInt(c.batchSize) ? ok : bad(`batch size ${c.batchSize} must be a positive integer`),
    () =>
      Number.isSafeInteger(c.seed) && c.seed >= 0 ? ok : bad(`seed ${c.seed} must be a non-negative integer`),
    () => Array.isArray(c.attacks) && c.attacks.length >= 1 ? ok : bad("give at least one attack"),
    () => c.attacks.length < 500 ? ok : bad("at most 499 attack settings per evaluation"),
    () => pipe(c.attacks.map(checkAttack), E.sequenceArray, E.map(() => undefined)),
  ];
  for (const check of checks) {
    const r = check();
    if (E.isLeft(r)) return E.left(r.left);
  }
  return E.right(c);
}

/** Merge a parsed JSON object over the defaults: unknown keys and wrongly typed values are errors. */
export function configFromJson(value: unknown, source: string): E.Either<EvalConfigError, EvalConfig> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return E.left(new EvalConfigError(`${source}: expected a JSON object`));
  }
  const obj = value as Record<string, unknown>;
  const base = evalDefaults(typeof obj.dataset === "string" ? { dataset: obj.dataset as DatasetName } : {});
  const merged = mergeTyped(base as unknown as Record<string, unknown>, obj, source, ["attacks"]);
  if (E.isLeft(merged)) return merged;
  const out = merged.right as unknown as EvalConfig;
  if (obj.attacks !== undefined) {
    if (!Array.isArray(obj.attacks)) {
      return E.left(new EvalConfigError(`${source}: "attacks" must be an array`));
    }
    const specs: AttackSpec[] = [];
    for (const [i, a] of obj.attacks.entries()) {
      if (a === null || typeof a !== "object") {
        return E.left(new EvalConfigError(`${source}: attacks[${i}] must be an object`));
      }
      const { norm, attack } = a as Record<string, unknown>;
      const known = {
        ...(norm === "l2" ? { norm: "l2" as const } : {}),
        ...((ATTACKS as readonly unknown[]).includes(attack) ? { attack: attack as AttackName } : {}),
      };
      const spec = mergeTyped(
        attackDefaults(out.dataset, known) as unknown as Record<string, unknown>,
        a as Record<string, unknown>,
        `${source}: attacks[${i}]`,
        [],
      );
      if (E.isLeft(spec)) return spec;
      specs.push(spec.right as unknown as AttackSpec);
    }
    out.attacks = specs;
  }
  return E.right(out);
}

/** Fields nullable in the defaults (any null or value of the right type is accepted). */
const NULLABLE = new Set(["dataDir", "ddpm", "out", "alpha"]);

function mergeTyped(
  base: Record<string, unknown>,
  fields: Record<string, unknown>,
  source: string,
  skip: string[],
): E.Either<EvalConfigError, Record<string, unknown>> {
  const out = { ...base };
  for (const [k, v] of Object.entries(fields)) {
    if (skip.includes(k)) continue;
    if (!(k in base)) {
      return E.left(
        new EvalConfigError(`${source}: unknown field "${k}" (known: ${Object.keys(base).join(", ")})`),
      );
    }
    const want = base[k];
    const typeOk = v === null
      ? NULLABLE.has(k)
      : want === null
      ? NULLABLE.has(k) && typeof v !== "object"
      : typeof v === typeof want;
    if (!typeOk) {
      return E.left(new EvalConfigError(`${source}: field "${k}" has the wrong type (${JSON.stringify(v)})`));
    }
    out[k] = v;
  }
  return E.right(out);
}
