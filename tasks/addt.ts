/** Entry point of the `addt` command line (`deno task addt <command>`); see src/cli/program.ts. */
import { main } from "../src/cli/program.ts";

Deno.exit(await main(Deno.args));
