/**
 * The `addt` command line: subcommands parsed by commander, each action a TaskEither flow whose Left
 * becomes one line on stderr and a typed exit code (see errors.ts). `main` returns the exit code instead of
 * exiting so tests and other tools can call it.
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import * as T from "fp-ts/Task.js";
import * as TE from "fp-ts/TaskEither.js";
import { ExitCode, exitCodeOf, reportFailure, toFailure } from "./errors.ts";
import { info } from "./info.ts";
import { registerTrainCommands } from "./train.ts";
import { registerEvalCommand } from "./eval.ts";
import { registerEvalCleanCommand } from "./eval_clean.ts";
import { registerSampleCommand } from "./sample.ts";
import { registerFinetuneCommand } from "./finetune.ts";
import { registerMainJob } from "./main_job.ts";

/** Run a command's flow: print its output, or its failure as one line; give the exit code. */
const runFlow = (flow: TE.TaskEither<unknown, string>): T.Task<number> => () =>
  exitCodeOf(flow, (out) => {
    if (out !== "") console.log(out);
  });

export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command("addt")
    .description("diffusion-based adversarial purification on WebGPU")
    // commander's own error is already one line ("error: unknown option '--x'"): no help hint after it
    .exitOverride();

  program
    .command("info")
    .description("show the WebGPU adapter, its limits and features, and the Deno version")
    .option("--json", "machine-readable output")
    .action(async (opts) => setExit(await runFlow(info(opts))()));

  registerTrainCommands(program, setExit);
  registerEvalCommand(program, setExit);
  registerEvalCleanCommand(program, setExit);
  registerSampleCommand(program, setExit);
  registerFinetuneCommand(program, setExit);
  registerMainJob(program, setExit);
  return program;
}

/** Parse `args` (without the program name) and run the chosen command; resolves to the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let code: number = ExitCode.ok;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync([...args], { from: "user" });
  } catch (e) {
    // commander has already printed its own one-line message (or the help) for these
    if (e instanceof CommanderError) return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    const f = toFailure(e);
    reportFailure(f);
    return f.exitCode;
  }
  return code;
}
