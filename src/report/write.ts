/** Write a main report's three files (report.json, report.md, report.html) into its folder, atomically. */
import { writeFileAtomic } from "../io/safetensors.ts";
import { loadImages, renderMainReportHtml } from "./html.ts";
import { mainReportMarkdown } from "./markdown.ts";
import type { MainReport } from "./types.ts";

/** report.json: every number of the report, pretty-printed (non-finite numbers become null). */
export function mainReportJson(report: MainReport): string {
  return JSON.stringify(report, null, 2) + "\n";
}

/**
 * Write report.json, report.md and report.html into `dir` (created when missing). The PNG grids named in
 * `report.images` must already be in `dir`: the HTML embeds them; a missing one is shown as a note.
 * Returns the three paths.
 */
export async function writeMainReport(
  dir: string,
  report: MainReport,
): Promise<{ json: string; md: string; html: string }> {
  await Deno.mkdir(dir, { recursive: true });
  const paths = { json: `${dir}/report.json`, md: `${dir}/report.md`, html: `${dir}/report.html` };
  await writeFileAtomic(paths.json, mainReportJson(report));
  await writeFileAtomic(paths.md, mainReportMarkdown(report));
  const images = await loadImages(dir, report.images);
  await writeFileAtomic(paths.html, renderMainReportHtml(report, images));
  return paths;
}
