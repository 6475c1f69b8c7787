/**
 * The library surface: a script that imports nothing but mod.ts (tests/fixtures/mod_only_script.ts) loads
 * data, builds tiny weights and the purifier, runs an attack, evaluates and fine-tunes with ADDT, in a
 * subprocess, as a researcher would run it.
 */
import { check, freshSeed } from "./util.ts";

const root = new URL("..", import.meta.url).pathname;
const script = "tests/fixtures/mod_only_script.ts";

Deno.test("mod.ts surface: the script imports only mod.ts", async () => {
  const src = await Deno.readTextFile(`${root}/${script}`);
  const specifiers = [...src.matchAll(/\bfrom\s+"([^"]+)"|\bimport\s*\(\s*"([^"]+)"/g)].map((m) =>
    m[1] ?? m[2]
  );
  check(
    specifiers.length === 1 && specifiers[0] === "../../mod.ts",
    `the script must import only ../../mod.ts, imports: ${specifiers.join(", ")}`,
  );
});

Deno.test("mod.ts surface: data, tiny weights, purifier, attack, evaluation and ADDT fine-tuning from one script", async () => {
  const dir = await Deno.makeTempDir();
  const seed = freshSeed() % 100000;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, dir, String(seed)],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    const stdout = dec.decode(out.stdout), stderr = dec.decode(out.stderr);
    const ctx = `(seed ${seed}, exit ${out.code})\nstdout:\n${stdout}\nstderr:\n${stderr}`;
    check(out.success, `the script failed ${ctx}`);
    const line = stdout.trim().split("\n").at(-1)!;
    const r = JSON.parse(line);
    check(r.maxDelta <= r.eps + 1e-6 && r.inBox && r.changed, `attack: ${line} ${ctx}`);
    check(r.evaluated === r.n, `evaluation of ${r.evaluated} images, want ${r.n}`);
    for (const acc of [r.clean, r.robust]) check(acc >= 0 && acc <= 1, `accuracy ${acc}`);
    check(r.finetuneSteps === 2 && r.losses.length === 2, `fine-tune: ${line}`);
    check(r.losses.every((l: number) => Number.isFinite(l) && l > 0), `losses ${r.losses}`);
    check(r.weightsChanged, `the fine-tuned EMA weights equal the starting ones (seed ${seed})`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
