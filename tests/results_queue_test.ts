/**
 * tasks/results.sh, the queue of evaluations behind RESULTS.md: every row must be a valid `addt eval`
 * command with the protocol RESULTS.md states (t* 100, NFE 5, PGD-20, K 20, seed 0, the issues' image
 * counts), and each ADDT row must be its vanilla row with only the weights changed (paired noise). A typo
 * here would otherwise surface hours into a background run.
 */
import { evalConfigFromArgs } from "../src/cli/eval.ts";
import { type EvalConfig, stepSize } from "../src/eval/config.ts";
import { queueRows } from "../tasks/results_tables.ts";
import { check, repoRoot } from "./util.ts";

const rows = (env: Record<string, string> = {}) => queueRows(repoRoot, env);

Deno.test("results queue: every row is a valid eval with RESULTS.md's protocol and the issues' counts", async () => {
  const queue = await rows();
  check(queue.size >= 16, `only ${queue.size} rows`);
  const configs = new Map<string, EvalConfig>();
  for (const [name, args] of queue) {
    const c = await evalConfigFromArgs(args);
    configs.set(name, c);
    check(c.out === `out/${name}`, `${name}: out ${c.out}`);
    check(c.tStar === 100 && c.nfe === 5 && c.seed === 0 && c.k === 20, `${name}: protocol`);
    check(c.checkpoint === false, `${name}: runs without checkpointing`);
    const eot10 = c.attacks.some((a) => a.eot === 10);
    const autoattack = c.attacks.some((a) => a.attack === "autoattack-rand");
    if (!autoattack) {
      check(
        c.attacks.every((a) => a.attack === "pgd" && a.steps === 20 && !a.randomStart),
        `${name}: PGD-20`,
      );
      check(c.n >= (eot10 ? 128 : 256), `${name}: ${c.n} images`);
    } else {
      // AutoAttack-rand as its authors define it, not shortened by the queue's PGD-20 flags
      check(c.attacks.every((a) => a.steps === 100 && a.eot === 20), `${name}: APGD-100 with EOT 20`);
    }
    for (const a of c.attacks.filter((a) => a.attack === "pgd")) {
      const ratio = a.norm === "linf" ? 4 : 5;
      check(Math.abs(stepSize(a) - a.eps / ratio) < 1e-12, `${name}: alpha ${stepSize(a)} for eps ${a.eps}`);
    }
  }
  // the issues' rows are all there
  for (const d of ["ddpm", "ddim"]) {
    for (const m of ["v", "a"]) {
      for (const r of ["eot1", "eot10-linf", "eot10-l2"]) {
        check(queue.has(`${m}-${d}-${r}`), `${m}-${d}-${r}`);
      }
    }
  }
  const eps = (name: string) => configs.get(name)!.attacks.map((a) => `${a.norm} ${a.eps}`);
  check(eps("v-ddpm-eot10-l2").every((e) => e === "l2 2"), "L2 rows at eps 2.0");
  check(eps("v-ddpm-eot10-linf").every((e) => e === "linf 0.3"), "Linf rows at eps 0.3");
  // an ADDT row is its vanilla row with other weights: same images, attacks and noise streams
  for (const [name, c] of configs) {
    if (!name.startsWith("a-")) continue;
    const v = configs.get(`v-${name.slice(2)}`)!;
    const { ddpm: _a, out: _ao, ...rest } = c;
    const { ddpm: _v, out: _vo, ...vRest } = v;
    const common = v.attacks.slice(0, c.attacks.length);
    check(c.ddpm !== v.ddpm, `${name}: other weights than ${v.ddpm}`);
    check(
      JSON.stringify({ ...rest, attacks: [] }) === JSON.stringify({ ...vRest, attacks: [] }) &&
        JSON.stringify(c.attacks) === JSON.stringify(common),
      `${name} must repeat the first settings of its vanilla row in the same order`,
    );
  }
});

Deno.test("results queue: BATCH and ROOT reach every row; an unknown row name is refused", async () => {
  const queue = await rows({ BATCH: "64", ROOT: "/tmp/elsewhere" });
  for (const [name, args] of queue) {
    const c = await evalConfigFromArgs(args);
    check(c.out === `/tmp/elsewhere/${name}`, `${name}: out ${c.out}`);
    check(name === "v-ddpm-aa" || c.batchSize === 64, `${name}: batch ${c.batchSize}`);
  }
  const bad = await new Deno.Command("bash", {
    args: ["tasks/results.sh", "no-such-row"],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  check(
    bad.code === 2 && /no row named 'no-such-row'/.test(new TextDecoder().decode(bad.stderr)),
    "bad name",
  );
});

Deno.test("results queue --status: done, partly done, running and not started rows", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/v-ddim-eot1`);
    await Deno.writeTextFile(`${root}/v-ddim-eot1/report.json`, "{}");
    await Deno.mkdir(`${root}/v-ddpm-eot1`);
    const batches = [{ count: 32 }, { count: 32 }];
    await Deno.writeTextFile(`${root}/v-ddpm-eot1/progress.json`, JSON.stringify({ batches }));
    // locks: one held by a live process (this test), one left behind by a killed worker
    await Deno.mkdir(`${root}/.locks/v-ddpm-eot1`, { recursive: true });
    await Deno.writeTextFile(`${root}/.locks/v-ddpm-eot1/pid`, `${Deno.pid}`);
    await Deno.mkdir(`${root}/.locks/v-ddim-eot1`, { recursive: true });
    await Deno.writeTextFile(`${root}/.locks/v-ddim-eot1/pid`, "4194303");
    const out = await new Deno.Command("bash", {
      args: ["tasks/results.sh", "--status"],
      cwd: repoRoot,
      env: { ROOT: root },
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    const state = (name: string) => lines.find((l) => l.startsWith(name + " "))?.slice(20).trim();
    check(out.code === 0 && lines.length === (await rows()).size, `${lines.length} lines`);
    check(state("v-ddim-eot1") === "done", `v-ddim-eot1: ${state("v-ddim-eot1")}`);
    check(state("v-ddpm-eot1") === "64 of 256 images, running", `v-ddpm-eot1: ${state("v-ddpm-eot1")}`);
    check(state("a-ddpm-eot1") === "not started", `a-ddpm-eot1: ${state("a-ddpm-eot1")}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("results queue: runs the rows named in the order named, skipping finished ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // a stand-in for deno: records the row it was asked to evaluate and finishes it
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(
      `${dir}/bin/deno`,
      `#!/usr/bin/env bash\nout=\${@: -1}\nmkdir -p "$out" && echo "$(basename "$out")" >> ${dir}/ran && echo '{}' > "$out/report.json"\n`,
    );
    await Deno.chmod(`${dir}/bin/deno`, 0o755);
    await Deno.mkdir(`${dir}/root/v-ddim-eot1`, { recursive: true });
    await Deno.writeTextFile(`${dir}/root/v-ddim-eot1/report.json`, "{}");
    const out = await new Deno.Command("bash", {
      args: ["tasks/results.sh", "a-ddpm-eot1", "v-ddim-eot1", "v-ddpm-eot1"],
      cwd: repoRoot,
      env: { ROOT: `${dir}/root`, JOBS: "1", PATH: `${dir}/bin:${Deno.env.get("PATH")}` },
      stdout: "null",
      stderr: "piped",
    }).output();
    check(out.code === 0, new TextDecoder().decode(out.stderr));
    const ran = (await Deno.readTextFile(`${dir}/ran`)).trim().split("\n");
    check(ran.join(" ") === "a-ddpm-eot1 v-ddpm-eot1", `ran ${ran.join(" ")}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ship_run.sh: copies a run folder with only its last checkpoint, replacing the old copy", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = `${dir}/run`, dst = `${dir}/weights/run`;
    for (const step of ["step-00000010", "step-00000020"]) {
      await Deno.mkdir(`${src}/checkpoints/${step}`, { recursive: true });
      await Deno.writeTextFile(`${src}/checkpoints/${step}/model.safetensors`, step);
    }
    await Deno.writeTextFile(`${src}/manifest.json`, JSON.stringify({ dir: "checkpoints/step-00000020" }));
    await Deno.writeTextFile(`${src}/ema.safetensors`, "ema");
    const ship = () =>
      new Deno.Command("bash", { args: ["tasks/ship_run.sh", src, dst], cwd: repoRoot, stdout: "null" })
        .output();
    await Deno.mkdir(dst, { recursive: true });
    await Deno.writeTextFile(`${dst}/stale.txt`, "from an older ship");
    check((await ship()).code === 0, "ship failed");
    const kept = [...Deno.readDirSync(`${dst}/checkpoints`)].map((e) => e.name);
    check(kept.length === 1 && kept[0] === "step-00000020", `kept ${kept}`);
    check(Deno.readTextFileSync(`${dst}/ema.safetensors`) === "ema", "files copied");
    check([...Deno.readDirSync(dst)].every((e) => e.name !== "stale.txt"), "the old copy is replaced");
    check([...Deno.readDirSync(`${dir}/weights`)].length === 1, "no temporary folder left");
    const bad = await new Deno.Command("bash", {
      args: ["tasks/ship_run.sh", `${dir}/none`, `${dir}/x`],
      cwd: repoRoot,
      stderr: "piped",
    }).output();
    check(bad.code === 2 && /no manifest.json/.test(new TextDecoder().decode(bad.stderr)), "missing run");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
