/** Placeholder until the command lands: registers `finetune` as not implemented. */
import type { Command } from "@commander-js/extra-typings";
import { NotImplementedError, reportFailure, toFailure } from "./errors.ts";

export function registerFinetuneCommand(program: Command, setExit: (code: number) => void): void {
  program.command("finetune").description("(not implemented yet)").allowUnknownOption().allowExcessArguments()
    .action(() => {
      const f = toFailure(new NotImplementedError("finetune"));
      reportFailure(f);
      setExit(f.exitCode);
    });
}
