/**
 * `addt info`: what the WebGPU adapter is and the facts that decide which kernels run (software or GPU,
 * buffer and workgroup limits, optional features), as text for people or JSON for scripts.
 */
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import type { AdapterFacts } from "../gpu/context.ts";
import { getGpu } from "../gpu/context.ts";

/** The limits that bound our tensor sizes and kernel shapes. */
export const INFO_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxStorageBuffersPerShaderStage",
] as const;

/** The optional features kernels can use when present. */
export const INFO_FEATURES = ["shader-f16", "timestamp-query"] as const;

export interface InfoReport {
  adapter: {
    description: string;
    vendor: string;
    architecture: string;
    isSoftware: boolean;
    backend: string;
    /** "env" when DENO_WEBGPU_BACKEND forces one backend; "guessed" from the description otherwise
     * (Deno does not report the backend). */
    backendSource: "env" | "guessed";
  };
  limits: Record<string, number | null>;
  features: Record<string, boolean>;
  allFeatures: string[];
  deno: { deno: string; v8: string; typescript: string };
}

/** PCI vendor ids that adapters report as numbers (Mesa's software drivers use the Khronos id). */
const VENDORS: Record<number, string> = {
  0x10de: "NVIDIA",
  0x1002: "AMD",
  0x8086: "Intel",
  0x106b: "Apple",
  0x13b5: "Arm",
  0x5143: "Qualcomm",
  0x1af4: "virtio",
  0x10005: "Mesa",
};

function vendorName(vendor: string): string {
  if (!/^\d+$/.test(vendor)) return vendor || "(not reported)";
  const id = Number(vendor);
  const known = VENDORS[id];
  return `0x${id.toString(16)}${known ? ` (${known})` : ""}`;
}

/** The backend forced through Deno's DENO_WEBGPU_BACKEND, when it names exactly one. */
function forcedBackend(): string | null {
  let v: string | undefined;
  try {
    v = Deno.env.get("DENO_WEBGPU_BACKEND");
  } catch {
    return null;
  }
  const names = (v ?? "").split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "");
  return names.length === 1 ? names[0] : null;
}

export function infoReport(facts: AdapterFacts): InfoReport {
  const forced = forcedBackend();
  return {
    adapter: {
      description: facts.description,
      vendor: vendorName(facts.vendor),
      architecture: facts.architecture,
      isSoftware: facts.isSoftware,
      backend: forced ?? facts.backend,
      backendSource: forced ? "env" : "guessed",
    },
    limits: Object.fromEntries(INFO_LIMITS.map((k) => [k, facts.limits[k] ?? null])),
    features: Object.fromEntries(INFO_FEATURES.map((f) => [f, facts.features.includes(f)])),
    allFeatures: facts.features,
    deno: { ...Deno.version },
  };
}

/** A byte count in binary units; approximate ("~2 GiB") when not exact, e.g. a 2^31-1 buffer limit. */
function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${n}`;
  const shown = Number.isInteger(v) ? `${v}` : `~${Math.round(v * 10) / 10}`;
  return `${shown} ${units[u]} (${n})`;
}

/** Limits measured in bytes are shown in binary units too. */
const BYTE_LIMITS = new Set([
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
]);

export function formatInfo(r: InfoReport): string {
  const yesNo = (b: boolean) => (b ? "yes" : "no");
  const row = (k: string, v: string, w = 14) => `${k.padEnd(w)}${v}`;
  const a = r.adapter;
  const lines = [
    row("adapter", a.description),
    row("vendor", a.vendor),
    row("architecture", a.architecture || "(not reported)"),
    row(
      "software",
      `${yesNo(a.isSoftware)}${a.isSoftware ? " (kernels run on the CPU: small shapes only)" : ""}`,
    ),
    row(
      "backend",
      a.backendSource === "env" ? `${a.backend} (DENO_WEBGPU_BACKEND)` : `${a.backend} (guessed)`,
    ),
    "limits",
    ...Object.entries(r.limits).map(([k, v]) =>
      row(`  ${k}`, v === null ? "(not reported)" : BYTE_LIMITS.has(k) ? bytes(v) : `${v}`, 36)
    ),
    "features",
    ...Object.entries(r.features).map(([k, v]) => row(`  ${k}`, yesNo(v), 36)),
    row("deno", `${r.deno.deno} (v8 ${r.deno.v8}, typescript ${r.deno.typescript})`),
  ];
  return lines.join("\n");
}

/** The `info` command as a flow: acquire the GPU, describe it, render. Failures stay typed (Left). */
export const info = (opts: { json?: boolean }): TE.TaskEither<unknown, string> =>
  pipe(
    TE.tryCatch(() => getGpu(), (e) => e),
    TE.map((gpu) => infoReport(gpu.adapter)),
    TE.map((r) => (opts.json ? JSON.stringify(r, null, 2) : formatInfo(r))),
  );
