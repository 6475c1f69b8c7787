/**
 * The fine-tuning loss curve of a run folder: the (step, loss) of every logged line of its train.jsonl
 * (src/train/progress.ts format). Lines without both numbers (an evaluation record, a line cut short by a
 * kill) are skipped rather than failing the report.
 */
import { exists } from "../io/files.ts";

export interface LossCurve {
  points: { step: number; loss: number }[];
  /** Why the curve is empty or partial, for the report's notes (null: nothing to say). */
  note: string | null;
}

export function parseLossCurve(text: string): { step: number; loss: number }[] {
  const points: { step: number; loss: number }[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      continue;
    }
    const { step, loss } = (r ?? {}) as Record<string, unknown>;
    if (typeof step === "number" && typeof loss === "number" && Number.isFinite(loss)) {
      points.push({ step, loss });
    }
  }
  return points.sort((a, b) => a.step - b.step);
}

export async function readLossCurve(runDir: string): Promise<LossCurve> {
  const path = `${runDir}/train.jsonl`;
  if (!(await exists(path))) return { points: [], note: `no fine-tuning loss curve: ${path} not found` };
  const points = parseLossCurve(await Deno.readTextFile(path));
  return { points, note: points.length ? null : `no fine-tuning loss curve: ${path} has no logged steps` };
}
