/** Placeholder until the main job lands: `addt` with no subcommand prints the help. */
import type { Command } from "@commander-js/extra-typings";

export function registerMainJob(program: Command, _setExit: (code: number) => void): void {
  program.action(() => program.help());
}
