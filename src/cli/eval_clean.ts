/** Placeholder until the command lands: registers `eval-clean` as not implemented. */
import type { Command } from "@commander-js/extra-typings";
import { NotImplementedError, reportFailure, toFailure } from "./errors.ts";

export function registerEvalCleanCommand(program: Command, setExit: (code: number) => void): void {
  program.command("eval-clean").description("(not implemented yet)").allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      const f = toFailure(new NotImplementedError("eval-clean"));
      reportFailure(f);
      setExit(f.exitCode);
    });
}
