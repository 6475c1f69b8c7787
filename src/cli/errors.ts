/**
 * How failures reach the user: every error becomes ONE line on stderr and a non-zero exit code chosen by
 * its type, so scripts can tell "no GPU" from "bad arguments" from a bug. Stack traces only with
 * ADDT_DEBUG=1, because a trace is noise for a user whose machine simply has no adapter.
 */
import { GpuOpError, NoAdapterError, ShapeError } from "../gpu/errors.ts";
import { DataError } from "../data/errors.ts";
import { SafetensorsError } from "../io/safetensors.ts";
import { ParamLoadError } from "../nn/model_io.ts";
import { EvalConfigError } from "../eval/config.ts";
import { TrainingDivergedError, TrainSetupError } from "../train/errors.ts";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";

/** Exit codes, stable for scripts. */
export const ExitCode = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  noAdapter: 3,
  gpu: 4,
  notImplemented: 5,
  diverged: 6,
} as const;

/** A subcommand that later work will fill in. */
export class NotImplementedError extends Error {
  override readonly name = "NotImplementedError";
  constructor(readonly command: string) {
    super(`'${command}' is not implemented yet`);
  }
}

/** Bad arguments that the parser could not catch (values out of range, missing files...). */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** What the CLI does with a failure: the one line to print and the exit code. */
export interface CliFailure {
  readonly line: string;
  readonly exitCode: number;
  /** Kept for ADDT_DEBUG=1 only. */
  readonly cause: unknown;
}

/** The first line of a message, trimmed, so multi-line driver messages stay one line. */
const firstLine = (s: string): string => s.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "";

export function toFailure(e: unknown): CliFailure {
  const message = e instanceof Error ? firstLine(e.message) : firstLine(String(e));
  const line = (text: string) => `addt: ${text}`;
  if (e instanceof NoAdapterError) return { line: line(message), exitCode: ExitCode.noAdapter, cause: e };
  if (e instanceof GpuOpError) return { line: line(message), exitCode: ExitCode.gpu, cause: e };
  if (e instanceof NotImplementedError) {
    return { line: line(message), exitCode: ExitCode.notImplemented, cause: e };
  }
  if (e instanceof TrainingDivergedError) {
    return { line: line(message), exitCode: ExitCode.diverged, cause: e };
  }
  // the user's input (flags, files, configs, shapes) is wrong: exit 2, one line
  const userErrors = [
    UsageError,
    ShapeError,
    DataError,
    SafetensorsError,
    ParamLoadError,
    EvalConfigError,
    TrainSetupError,
  ];
  if (userErrors.some((k) => e instanceof k)) {
    return { line: line(message), exitCode: ExitCode.usage, cause: e };
  }
  const name = e instanceof Error ? e.name : "error";
  return {
    line: line(`unexpected ${name}: ${message} (run with ADDT_DEBUG=1 for a stack trace)`),
    exitCode: ExitCode.unexpected,
    cause: e,
  };
}

/** Print a failure the way the CLI promises: one line, plus the trace only when debugging. */
export function reportFailure(f: CliFailure): void {
  console.error(f.line);
  if (debugging() && f.cause instanceof Error && f.cause.stack) {
    console.error(f.cause.stack);
  }
}

function debugging(): boolean {
  try {
    return Deno.env.get("ADDT_DEBUG") === "1";
  } catch {
    return false; // no --allow-env: not debugging
  }
}

/**
 * Run a command's flow to its exit code: a Left is printed as one line (reportFailure), a Right is handed
 * to `show` (which prints the command's result). Every subcommand ends through here.
 */
export function exitCodeOf<A>(flow: TE.TaskEither<unknown, A>, show: (a: A) => void): Promise<number> {
  return pipe(
    flow,
    TE.match(
      (e): number => {
        const f = toFailure(e);
        reportFailure(f);
        return f.exitCode;
      },
      (a): number => {
        show(a);
        return ExitCode.ok;
      },
    ),
  )();
}
