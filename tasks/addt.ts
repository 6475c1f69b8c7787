/** Entry point of the `addt` command line (`deno task addt <command>`); see src/cli/program.ts. */
import { main } from "../src/cli/program.ts";

// the training commands (src/cli/train.ts) load the model code only when they run
const TRAIN = ["train-classifier", "train-ddpm"];
Deno.exit(
  TRAIN.includes(Deno.args[0])
    ? await (await import("../src/cli/train.ts")).trainMain(Deno.args)
    : Deno.args[0] === "eval"
    ? await (await import("../src/cli/eval.ts")).evalMain(Deno.args)
    : await main(Deno.args),
);
