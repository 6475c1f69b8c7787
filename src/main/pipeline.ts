/**
 * The main job as one fp-ts pipeline: validated config -> the run folders exist -> the ADDT weights (a
 * short ADDT fine-tune of the vanilla DDPM, or the shipped ADDT run) -> the networks and the test images
 * -> for each defense, both models evaluated with the same EvalConfig (same images, seeds and noise
 * streams) -> image grids -> the fine-tuning loss curve -> report.json / report.md / report.html.
 * Stages are TaskEithers; failures stay typed until the CLI turns them into one line. Each evaluation
 * saves its finished batches under <out>/progress/<model>-<defense>[-autoattack]/, so rerunning a stopped
 * job continues its evaluations (src/eval/resume.ts).
 */
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { getGpu, type Gpu } from "../gpu/context.ts";
import type { ParamStore } from "../nn/params.ts";
import { cnnTrace } from "../nn/classifier.ts";
import { unetTrace } from "../nn/unet.ts";
import { wrnTrace } from "../nn/wideresnet.ts";
import { toFloat } from "../data/dataset.ts";
import { attempt, exists } from "../io/files.ts";
import { loadSplits } from "../train/data.ts";
import type { Defense } from "../defense/defense.ts";
import { type EvalConfig, EvalConfigError, evalDefaults, standardEps } from "../eval/config.ts";
import { type EvalReport, UNDEFENDED_WARN } from "../eval/report.ts";
import { formatStat } from "../eval/stats.ts";
import type { Norm } from "../attack/projection.ts";
import { evaluate, gitCommit } from "../eval/run.ts";
import { evalProgressKey, weightsStamps } from "../eval/resume.ts";
import { MAIN_REPORT_FORMAT, type MainReport } from "../report/types.ts";
import { writeMainReport } from "../report/mod.ts";
import { gridCount, type MainConfig, mainConfigProblems, type MainDefense } from "./defaults.ts";
import { buildDefense, DEFENSE_NAMES, loadClassifierRun, loadDdpmRun } from "./models.ts";
import {
  autoAttackSpecs,
  comparisonMarkdown,
  comparisonRows,
  headlineAttack,
  mainAttacks,
} from "./compare.ts";
import {
  describeCost,
  estimateMainCost,
  evalFlops,
  formatDuration,
  gridFlops,
  type NetFlops,
} from "./cost.ts";
import { writeImageGrids } from "./grids.ts";
import { readLossCurve } from "./loss_curve.ts";
import { type FinetuneOptions, finetuneStage } from "./finetune.ts";

export interface MainHooks {
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
  /** The git commit to record (default: asked from git). */
  commit?: string;
  /** Passed to the ADDT fine-tune (progress output, test hooks). */
  finetune?: FinetuneOptions;
}

export interface MainResult {
  report: MainReport;
  /** The comparison table (Markdown). */
  table: string;
  /** Files written into config.out. */
  files: string[];
}

/** The config if usable, else its first problem as an EvalConfigError. */
export function validateMainConfig(c: MainConfig): TE.TaskEither<Error, MainConfig> {
  const problems = mainConfigProblems(c);
  return problems.length ? TE.left(new EvalConfigError(problems[0])) : TE.right(c);
}

/** Every folder the job reads, checked before any GPU work, so a typo costs nothing. */
async function checkFolders(c: MainConfig): Promise<void> {
  const folders: [string, string][] = [["--classifier", c.classifier], ["--ddpm", c.ddpm]];
  if (c.finetuneSteps === 0) folders.push(["--addt", c.addt]);
  if (c.dataDir) folders.push(["--data-dir", c.dataDir]);
  for (const [flag, dir] of folders) {
    if (!(await exists(dir))) {
      const hint = flag === "--addt"
        ? " (give the ADDT run folder, or --finetune-steps N to fine-tune one)"
        : "";
      throw new EvalConfigError(`${flag} ${dir}: folder not found${hint}`);
    }
    if (flag !== "--data-dir" && !(await exists(`${dir}/run.json`))) {
      throw new EvalConfigError(`${flag} ${dir}: not a training run folder (no run.json)`);
    }
  }
}

/** Stage timings and an ETA from the FLOPs done so far. */
class Clock {
  readonly timings: { stage: string; seconds: number }[] = [];
  private readonly t0 = performance.now();
  private flopsDone = 0;
  private secondsOnFlops = 0;

  constructor(private readonly say: (line: string) => void, private flopsLeft: number) {}

  async stage<A>(name: string, flops: number, f: () => Promise<A>): Promise<A> {
    const rate = this.secondsOnFlops > 0 ? this.flopsDone / this.secondsOnFlops : NaN;
    const eta = Number.isFinite(rate)
      ? ` (ETA of the remaining work ${formatDuration(this.flopsLeft / rate)})`
      : "";
    this.say(`main: ${name}...${eta}`);
    const t = performance.now();
    const out = await f();
    const seconds = (performance.now() - t) / 1000;
    this.timings.push({ stage: name, seconds });
    if (flops > 0) {
      this.flopsDone += flops;
      this.secondsOnFlops += seconds;
      this.flopsLeft = Math.max(0, this.flopsLeft - flops);
    }
    this.say(`main: ${name} done in ${formatDuration(seconds)} (elapsed ${formatDuration(this.elapsed)})`);
    return out;
  }

  get elapsed(): number {
    return (performance.now() - this.t0) / 1000;
  }
}

interface TestImages {
  images: Float32Array;
  labels: Uint8Array;
  shape: readonly [number, number, number];
}

/** The first `count` test images in [0, 1]. */
async function testImages(c: MainConfig, count: number): Promise<TestImages> {
  const { test } = await loadSplits(c.dataset, c.dataDir, ["test"]);
  const d = test!;
  if (d.n < count) throw new EvalConfigError(`${d.name} has ${d.n} images; the job needs ${count}`);
  const per = d.c * d.h * d.w;
  return {
    images: toFloat(d.images.subarray(0, count * per), "unit"),
    labels: d.labels.slice(0, count),
    shape: [d.c, d.h, d.w],
  };
}

/** The EvalConfig both models are evaluated with (for one defense). */
function evalConfigFor(
  c: MainConfig,
  kind: MainDefense,
  ddpm: string,
  aa: boolean,
  check: boolean,
): EvalConfig {
  return evalDefaults({
    dataset: c.dataset,
    dataDir: c.dataDir,
    classifier: c.classifier,
    ddpm,
    defense: kind,
    tStar: c.tStar,
    nfe: c.nfe,
    attacks: aa ? autoAttackSpecs(c) : mainAttacks(c),
    k: c.k,
    n: aa ? c.autoAttackN : c.n,
    offset: 0,
    batchSize: c.batchSize,
    seed: c.seed,
    out: null,
    checkUndefended: check,
  });
}

/**
 * The evaluation's sanity warnings worth a line on the terminal: the undefended classifier is expected to
 * survive the small budgets of the eps sweep, so its check is only flagged at the standard budget (the
 * report keeps every warning).
 */
function warningsToPrint(r: EvalReport, c: MainConfig): string[] {
  const lines = r.sanity.warnings.filter((w) => !w.startsWith("the undefended classifier"));
  for (const u of r.sanity.undefendedRobust) {
    const standard = standardEps(c.dataset, u.norm as Norm);
    if (u.eps >= standard * (1 - 1e-9) && u.robust.accuracy > UNDEFENDED_WARN) {
      lines.push(
        `the undefended classifier keeps ${formatStat(u.robust)} under PGD-20 ${u.norm} eps ${u.eps} ` +
          "(expected near 0): the attack is too weak to judge the defense",
      );
    }
  }
  return lines;
}

function printSettings(c: MainConfig, say: (line: string) => void): void {
  say("main: vanilla DBP vs ADDT, settings (flags override; --full for the issue's full protocol):");
  for (const [k, v] of Object.entries(c)) say(`  ${k}: ${Array.isArray(v) ? v.join(", ") : v}`);
}

/** Run the whole job; writes into config.out and returns the report. */
export function runMainJob(config: MainConfig, hooks: MainHooks = {}): TE.TaskEither<Error, MainResult> {
  const say = hooks.progress ?? ((line: string) => console.error(line));
  const stores: ParamStore[] = [];
  const release = () => {
    for (const s of stores.splice(0)) s.dispose();
  };
  const started = new Date();
  const t0 = performance.now();
  return pipe(
    validateMainConfig(config),
    TE.chainFirst((c) => attempt(() => checkFolders(c))),
    TE.chainFirst((c) => TE.fromIO(() => printSettings(c, say))),
    TE.bindTo("c"),
    TE.bind("gpu", () => attempt(getGpu)),
    TE.bind("data", ({ c }) => attempt(() => testImages(c, Math.max(c.n, c.autoAttackN)))),
    TE.bind("addt", ({ c }) => finetuneStage(c, say, hooks.finetune)),
    TE.chain(({ c, gpu, data, addt }) =>
      attempt(() => evaluateBoth(c, gpu, data, addt, say, stores, hooks, { started, t0 }))
    ),
    TE.chainFirst((r) => attempt(() => writeMainReport(config.out, r.report))),
    TE.map((r) => ({
      ...r,
      files: [...r.report.images.map((g) => g.file), "report.json", "report.md", "report.html"],
    })),
    TE.mapLeft((e) => {
      release();
      return e;
    }),
    TE.map((r) => {
      release();
      return r;
    }),
  );
}

interface Started {
  started: Date;
  t0: number;
}

async function evaluateBoth(
  c: MainConfig,
  gpu: Gpu,
  data: TestImages,
  addt: { dir: string; notes: string[]; seconds: number | null },
  say: (line: string) => void,
  stores: ParamStore[],
  hooks: MainHooks,
  when: Started,
): Promise<Omit<MainResult, "files">> {
  const cls = await loadClassifierRun(gpu, c.classifier, c.dataset);
  stores.push(cls.store);
  const vanilla = await loadDdpmRun(gpu, c.ddpm, c.dataset, "vanilla DDPM run");
  stores.push(vanilla.store);
  const tuned = await loadDdpmRun(gpu, addt.dir, c.dataset, "ADDT DDPM run");
  stores.push(tuned.store);
  if (JSON.stringify(tuned.config) !== JSON.stringify(vanilla.config)) {
    say(`main: note: the ADDT model's architecture differs from the vanilla one's`);
  }
  const nets: NetFlops = {
    unet: unetTrace(vanilla.config).flops,
    classifier: cls.model.arch === "cnn"
      ? cnnTrace(cls.model.config).flops
      : wrnTrace(cls.model.config).flops,
  };
  const cost = estimateMainCost(c, nets);
  say(`main: estimated cost ${describeCost(cost)}`);
  const clock = new Clock(say, cost.total);
  if (addt.seconds !== null) clock.timings.push({ stage: "fine-tune with ADDT", seconds: addt.seconds });
  const commit = hooks.commit ?? await gitCommit();
  const evals: MainReport["evals"] = [];
  const rows: MainReport["rows"] = [];
  const defenses = new Map<MainDefense, { vanilla: Defense; addt: Defense }>();
  for (const kind of c.defenses) {
    const name = DEFENSE_NAMES[kind];
    const pair = {
      vanilla: buildDefense(cls.classifier, vanilla, kind, c.tStar, c.nfe),
      addt: buildDefense(cls.classifier, tuned, kind, c.tStar, c.nfe),
    };
    defenses.set(kind, pair);
    const run = async (model: "vanilla" | "addt", aa: boolean): Promise<EvalReport> => {
      // the undefended sanity check depends on the classifier only: run it once, with the vanilla model
      const config = evalConfigFor(c, kind, model === "vanilla" ? c.ddpm : addt.dir, aa, model === "vanilla");
      // each evaluation resumes from its own progress file, so a stopped job continues where it was
      const weights = [`${c.classifier}/model.safetensors`, (model === "vanilla" ? vanilla : tuned).weights];
      const resume = {
        path: `${c.out}/progress/${model}-${kind}${aa ? "-autoattack" : ""}/progress.json`,
        key: evalProgressKey(config, await weightsStamps(weights)),
      };
      const report = await evaluate(
        { gpu, defense: pair[model], images: data.images, labels: data.labels, imageShape: data.shape },
        config,
        { progress: (l) => say(`  [${model} ${name}${aa ? " AutoAttack-rand" : ""}] ${l}`), commit, resume },
      );
      evals.push({ model, defense: name, report });
      for (const w of warningsToPrint(report, c)) say(`main: WARNING (${model} ${name}): ${w}`);
      return report;
    };
    const reports = { vanilla: [] as EvalReport[], addt: [] as EvalReport[] };
    for (const model of ["vanilla", "addt"] as const) {
      reports[model].push(
        await clock.stage(
          `evaluate ${model} ${name} (${c.n} images)`,
          evalFlops(c, nets, kind, "main"),
          () => run(model, false),
        ),
      );
    }
    rows.push(...comparisonRows(name, reports.vanilla[0], reports.addt[0], true));
    if (c.autoAttackN > 0) {
      for (const model of ["vanilla", "addt"] as const) {
        reports[model].push(
          await clock.stage(
            `AutoAttack-rand ${model} ${name} (${c.autoAttackN} images)`,
            evalFlops(c, nets, kind, "autoattack"),
            () => run(model, true),
          ),
        );
      }
      rows.push(...comparisonRows(name, reports.vanilla[1], reports.addt[1], false));
    }
  }
  const first = defenses.get(c.defenses[0])!;
  const g = gridCount(c), per = data.shape[0] * data.shape[1] * data.shape[2];
  const images = await clock.stage(`image grids (${g} images)`, gridFlops(c, nets), () =>
    writeImageGrids({
      gpu,
      vanilla: first.vanilla,
      addt: first.addt,
      images: data.images.slice(0, g * per),
      labels: data.labels.slice(0, g),
      shape: data.shape,
      spec: headlineAttack(c),
      seed: c.seed,
    }, c.out));
  const curve = await readLossCurve(addt.dir);
  const notes = [...addt.notes, ...(curve.note ? [curve.note] : [])];
  if (c.full) notes.push(`the full protocol (--full): ${describeCost(cost)}`);
  const report: MainReport = {
    format: MAIN_REPORT_FORMAT,
    title: `Vanilla DBP vs ADDT on ${c.dataset}`,
    config: { ...c, estimatedFlops: cost.total },
    seed: c.seed,
    commit,
    adapter: {
      description: gpu.adapter.description,
      isSoftware: gpu.adapter.isSoftware,
      backend: gpu.adapter.backend,
    },
    started: when.started.toISOString(),
    wallSeconds: (performance.now() - when.t0) / 1000,
    timings: clock.timings,
    notes,
    models: {
      vanilla: vanilla.weights,
      addt: tuned.weights,
      classifier: `${c.classifier}/model.safetensors`,
    },
    rows,
    lossCurve: curve.points,
    images,
    evals,
  };
  return { report, table: comparisonMarkdown(rows) };
}
