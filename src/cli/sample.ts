/** Placeholder until the command lands: registers `sample` as not implemented. */
import type { Command } from "@commander-js/extra-typings";
import { NotImplementedError, reportFailure, toFailure } from "./errors.ts";

export function registerSampleCommand(program: Command, setExit: (code: number) => void): void {
  program.command("sample").description("(not implemented yet)").allowUnknownOption().allowExcessArguments()
    .action(() => {
      const f = toFailure(new NotImplementedError("sample"));
      reportFailure(f);
      setExit(f.exitCode);
    });
}
