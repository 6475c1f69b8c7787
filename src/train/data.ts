/** The datasets a run trains and evaluates on, loaded by name; loader failures become one setup line. */
import type { Dataset, Split } from "../data/dataset.ts";
import { DataError } from "../data/errors.ts";
import { loadMnist } from "../data/mnist.ts";
import { loadFashionMnistSplits } from "../data/fashion_mnist.ts";
import { loadCifar10 } from "../data/cifar10.ts";
import { TrainSetupError } from "./errors.ts";
import type { DatasetName } from "./settings.ts";

/** The requested splits of a dataset (Fashion-MNIST parses its files once for both). */
export async function loadSplits(
  dataset: DatasetName,
  dataDir: string | null,
  splits: readonly Split[],
): Promise<Partial<Record<Split, Dataset>>> {
  try {
    const out: Partial<Record<Split, Dataset>> = {};
    if (dataset === "fashion-mnist") {
      const both = await loadFashionMnistSplits(dataDir ? { dir: dataDir } : {});
      for (const s of splits) out[s] = both[s];
      return out;
    }
    for (const s of splits) {
      out[s] = dataset === "mnist"
        ? await loadMnist(s, dataDir ? { dir: dataDir } : {})
        : await loadCifar10(dataDir!, s);
    }
    return out;
  } catch (e) {
    if (e instanceof DataError) throw new TrainSetupError(`${dataset}: ${e.message}`);
    throw e;
  }
}
