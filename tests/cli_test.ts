/**
 * The `addt` CLI, run as a user runs it: in a subprocess, checking exit codes, stdout and stderr.
 * The no-adapter path hides every adapter with Deno's DENO_WEBGPU_BACKEND set to a backend this OS does not
 * have, so the machine's real adapter is never touched.
 */
import { ExitCode, NotImplementedError, toFailure } from "../src/cli/errors.ts";
import { formatInfo, infoReport } from "../src/cli/info.ts";
import { GpuOpError } from "../src/gpu/errors.ts";
import { type CliRun as Run, runAddt } from "./util.ts";

const PLANNED = ["train-classifier", "train-ddpm", "sample", "eval", "finetune"];

const addt = runAddt;

function check(cond: unknown, what: string, run?: Run): asserts cond {
  if (!cond) {
    const detail = run ? `\n(exit ${run.code})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}` : "";
    throw new Error(what + detail);
  }
}

/** A backend name wgpu is never built with on this OS, so no adapter can be found. */
const absentBackend = Deno.build.os === "windows" ? "metal" : "dx12";

Deno.test("cli: --help lists every subcommand and exits 0", async () => {
  const r = await addt(["--help"]);
  check(r.code === 0, "--help should exit 0", r);
  for (const name of ["info", ...PLANNED]) {
    check(new RegExp(`^\\s+${name}\\b`, "m").test(r.stdout), `--help does not list '${name}'`, r);
  }
});

Deno.test("cli: info describes the adapter; --json agrees with the text", async () => {
  const text = await addt(["info"]);
  check(text.code === 0, "info should succeed on this machine", text);
  for (
    const key of [
      "adapter",
      "software",
      "maxStorageBufferBindingSize",
      "shader-f16",
      "timestamp-query",
      "deno",
    ]
  ) {
    check(text.stdout.includes(key), `info output lacks '${key}'`, text);
  }
  const json = await addt(["info", "--json"]);
  check(json.code === 0, "info --json should succeed", json);
  const r = JSON.parse(json.stdout);
  check(typeof r.adapter.description === "string" && r.adapter.description !== "", "no description", json);
  check(text.stdout.includes(r.adapter.description), "text and JSON name different adapters", text);
  check(typeof r.adapter.isSoftware === "boolean", "isSoftware is not a boolean", json);
  for (const [k, v] of Object.entries(r.limits)) {
    check(typeof v === "number" && v > 0, `limit ${k} = ${v}`, json);
  }
  check(
    r.limits.maxStorageBufferBindingSize >= 1 << 27,
    "the device should expose the adapter's limits",
    json,
  );
  check(r.deno.deno === Deno.version.deno, `deno version ${r.deno.deno} != ${Deno.version.deno}`, json);
});

Deno.test("cli: without an adapter, info fails with one line and no stack trace", async () => {
  const r = await addt(["info"], { DENO_WEBGPU_BACKEND: absentBackend });
  check(r.code === ExitCode.noAdapter, `exit code should be ${ExitCode.noAdapter}`, r);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  check(lines.length === 1, "stderr should be exactly one line", r);
  check(
    /no WebGPU adapter/.test(lines[0]) && /driver/.test(lines[0]) && /mesa/i.test(lines[0]),
    "unhelpful",
    r,
  );
  check(!/^\s+at /m.test(r.stderr + r.stdout), "a stack trace leaked", r);
  check(r.stdout.trim() === "", "nothing should go to stdout", r);
});

Deno.test("cli: a subcommand missing its required flag and an unknown command are usage errors", async () => {
  const r = await addt(["sample", "--steps", "10"]);
  check(r.code === ExitCode.usage, "sample without --ddpm should be a usage error", r);
  check(r.stderr.trim().split("\n").length === 1 && r.stderr.includes("--ddpm"), "one line naming --ddpm", r);
  const bad = await addt(["no-such-command"]);
  check(bad.code === ExitCode.usage, "unknown command should be a usage error", bad);
  check(!/^\s+at /m.test(bad.stderr), "a stack trace leaked", bad);
});

Deno.test("cli: failures map to one line and typed exit codes", () => {
  const multi = toFailure(new Error("first\n  at somewhere (x.ts:1:1)\nmore"));
  check(multi.exitCode === ExitCode.unexpected && !multi.line.includes("\n"), `one line: ${multi.line}`);
  check(multi.line.includes("first") && multi.line.includes("ADDT_DEBUG"), multi.line);
  check(toFailure(new GpuOpError("matmul", "validation", "bad binding")).exitCode === ExitCode.gpu, "gpu");
  check(toFailure(new NotImplementedError("eval")).exitCode === ExitCode.notImplemented, "placeholder");
  check(toFailure("a thrown string").exitCode === ExitCode.unexpected, "non-Error throw");
});

Deno.test("cli: info text for a GPU adapter with a missing limit", () => {
  const text = formatInfo(infoReport({
    description: "NVIDIA GeForce RTX 3080",
    vendor: String(0x10de),
    architecture: "ampere",
    backend: "vulkan",
    isSoftware: false,
    features: ["shader-f16"],
    limits: { maxBufferSize: 1 << 30, maxStorageBufferBindingSize: 2 ** 31 - 1 },
  }));
  check(/vendor\s+0x10de \(NVIDIA\)/.test(text), text);
  check(/software\s+no$/m.test(text), text);
  check(/maxBufferSize\s+1 GiB \(1073741824\)/.test(text), text);
  check(/maxStorageBufferBindingSize\s+~2 GiB/.test(text), text);
  check(/maxComputeWorkgroupStorageSize\s+\(not reported\)/.test(text), text);
  check(/shader-f16\s+yes/.test(text) && /timestamp-query\s+no/.test(text), text);
});
