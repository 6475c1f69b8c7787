/**
 * Model configs by name or from a JSON file, checked against the dataset's image shape before anything is
 * allocated. A JSON file holds a whole config or a partial one with `"base": "<name>"` (the dataset's
 * default base when absent): its fields override the base's, and unknown fields are an error.
 *
 * Names: DDPM UNets "mnist" (MNIST / Fashion-MNIST default) and "cifar10" (google/ddpm-cifar10-32, the
 * CIFAR-10 default); classifiers "cnn" (MNIST / Fashion-MNIST default, sized to the images), "wrn-28-10"
 * (CIFAR-10 default) and "wrn-16-4".
 */
import type { Gpu } from "../gpu/context.ts";
import type { Var } from "../autodiff/var.ts";
import type { ParamStore } from "../nn/params.ts";
import type { ForwardOptions } from "../nn/layers.ts";
import { CIFAR10_UNET, MNIST_UNET, type UNetConfig, unetTrace } from "../nn/unet.ts";
import { type CnnConfig, cnnForward, cnnTrace, createCnn, MNIST_CNN } from "../nn/classifier.ts";
import {
  CIFAR10_WRN,
  createWideResNet,
  type WideResNetConfig,
  wrnForward,
  wrnTrace,
} from "../nn/wideresnet.ts";
import { TrainSetupError } from "./errors.ts";
import { DATASET_SHAPES, type DatasetName } from "./settings.ts";

export type ClassifierModel =
  | { arch: "cnn"; config: CnnConfig }
  | { arch: "wrn"; config: WideResNetConfig };

const UNETS: Record<string, UNetConfig> = { mnist: MNIST_UNET, cifar10: CIFAR10_UNET };

function classifierBases(dataset: DatasetName): Record<string, ClassifierModel> {
  const [c, h] = DATASET_SHAPES[dataset];
  const sized = { image_size: h, in_channels: c };
  return {
    "cnn": { arch: "cnn", config: { ...MNIST_CNN, ...sized } },
    "wrn-28-10": { arch: "wrn", config: { ...CIFAR10_WRN, ...sized } },
    "wrn-16-4": { arch: "wrn", config: { ...CIFAR10_WRN, depth: 16, width: 4, ...sized } },
  };
}

const defaultUnet = (dataset: DatasetName) => dataset === "cifar10" ? "cifar10" : "mnist";
const defaultClassifier = (dataset: DatasetName) => dataset === "cifar10" ? "wrn-28-10" : "cnn";

const looksLikeFile = (s: string) => s.endsWith(".json") || s.includes("/") || s.includes("\\");

async function readJsonObject(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new TrainSetupError(`--config ${path}: ${why}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TrainSetupError(`--config ${path}: not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TrainSetupError(`--config ${path}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Base fields overridden by the file's, each of the base's type (arrays of numbers/strings stay arrays). */
function override<C extends object>(base: C, fields: Record<string, unknown>, source: string): C {
  const out = { ...base } as Record<string, unknown>;
  for (const [k, v] of Object.entries(fields)) {
    if (!(k in out)) {
      throw new TrainSetupError(`${source}: unknown field "${k}" (known: ${Object.keys(out).join(", ")})`);
    }
    const want = out[k];
    const ok = Array.isArray(want)
      ? Array.isArray(v) && v.every((x) => typeof x === typeof (want[0] ?? x))
      : typeof v === typeof want;
    if (!ok) throw new TrainSetupError(`${source}: field "${k}" should be like ${JSON.stringify(want)}`);
    out[k] = v;
  }
  return out as C;
}

/** Resolve `nameOrFile` (null: default) to a full config of the given table, via an optional base. */
async function resolve<C>(
  nameOrFile: string | null,
  table: Record<string, C>,
  fallback: string,
  merge: (base: C, fields: Record<string, unknown>, source: string) => C,
): Promise<{ name: string; config: C }> {
  const known = Object.keys(table).join(", ");
  const named = (name: string, source: string) => {
    const c = table[name];
    if (!c) throw new TrainSetupError(`${source}: unknown model config "${name}" (known: ${known})`);
    return c;
  };
  const ref = nameOrFile ?? fallback;
  if (!looksLikeFile(ref)) return { name: ref, config: named(ref, "--config") };
  const { base, ...fields } = await readJsonObject(ref);
  if (base !== undefined && typeof base !== "string") {
    throw new TrainSetupError(`${ref}: "base" must be a name`);
  }
  const baseName = (base as string | undefined) ?? fallback;
  return { name: ref, config: merge(named(baseName, ref), fields, ref) };
}

/** Turn a model's own validation or shape errors into one setup error naming the config. */
function checked<T>(name: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TrainSetupError) throw e;
    throw new TrainSetupError(`model config ${name}: ${(e as Error).message}`);
  }
}

/** The DDPM UNet config for a dataset (its shape must match the images). */
export async function resolveUnet(nameOrFile: string | null, dataset: DatasetName): Promise<UNetConfig> {
  const { name, config } = await resolve(nameOrFile, UNETS, defaultUnet(dataset), override);
  const [c, h, w] = DATASET_SHAPES[dataset];
  if (config.sample_size !== h || h !== w || config.in_channels !== c || config.out_channels !== c) {
    throw new TrainSetupError(
      `model config ${name} is for ${config.in_channels}x${config.sample_size}x${config.sample_size} images, ` +
        `but ${dataset} has ${c}x${h}x${w}`,
    );
  }
  checked(name, () => unetTrace(config));
  return config;
}

/** The classifier for a dataset: a CNN or a Wide ResNet, sized to its images. */
export async function resolveClassifier(
  nameOrFile: string | null,
  dataset: DatasetName,
): Promise<ClassifierModel> {
  const mergeModel = (base: ClassifierModel, fields: Record<string, unknown>, source: string) =>
    ({ arch: base.arch, config: override(base.config, fields, source) }) as ClassifierModel;
  const { name, config: model } = await resolve(
    nameOrFile,
    classifierBases(dataset),
    defaultClassifier(dataset),
    mergeModel,
  );
  const [c, h] = DATASET_SHAPES[dataset];
  const cfg = model.config;
  if (cfg.image_size !== h || cfg.in_channels !== c) {
    throw new TrainSetupError(
      `model config ${name} is for ${cfg.in_channels}x${cfg.image_size}x${cfg.image_size} images, ` +
        `but ${dataset} has ${c}x${h}x${h}`,
    );
  }
  checked(name, () => model.arch === "cnn" ? cnnTrace(model.config) : wrnTrace(model.config));
  return model;
}

export function createClassifier(gpu: Gpu, model: ClassifierModel, seed: number): ParamStore {
  return model.arch === "cnn"
    ? createCnn(gpu, model.config, seed)
    : createWideResNet(gpu, model.config, seed);
}

/** Logits [N, classes]. */
export function classifierForward(
  store: ParamStore,
  model: ClassifierModel,
  x: Var,
  opts: ForwardOptions,
): Var {
  return model.arch === "cnn"
    ? cnnForward(store, model.config, x, opts)
    : wrnForward(store, model.config, x, opts);
}
