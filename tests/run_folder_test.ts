/**
 * src/train/run_folder.ts, through which eval, eval-clean, sample and the main job load their networks: a run
 * trained on another dataset than the one asked for is refused with one line naming both, before any weights
 * are read; the shipped runs load when the dataset matches.
 */
import { loadClassifierRun, loadDdpmRun } from "../src/train/run_folder.ts";
import { EvalConfigError } from "../src/eval/config.ts";
import { check, testGpu } from "./util.ts";

async function refusal(load: () => Promise<unknown>): Promise<string> {
  try {
    await load();
  } catch (e) {
    check(e instanceof EvalConfigError, `expected an EvalConfigError, got ${e}`);
    return e.message;
  }
  throw new Error("loaded a run trained on another dataset");
}

Deno.test("run folders: a network trained on another dataset is refused, naming both", async () => {
  const gpu = await testGpu();
  const cls = await refusal(() => loadClassifierRun(gpu, "weights/mnist-cnn", { dataset: "fashion-mnist" }));
  check(cls === "the classifier run in weights/mnist-cnn was trained on mnist, not fashion-mnist", cls);
  const ddpm = await refusal(() =>
    loadDdpmRun(gpu, "weights/mnist-ddpm", true, { dataset: "cifar10", what: "vanilla DDPM" })
  );
  check(ddpm === "the vanilla DDPM in weights/mnist-ddpm was trained on mnist, not cifar10", ddpm);
  const ok = await loadClassifierRun(gpu, "weights/mnist-cnn", { dataset: "mnist" });
  check(ok.settings.dataset === "mnist", "the matching dataset loads");
  ok.store.dispose();
});
