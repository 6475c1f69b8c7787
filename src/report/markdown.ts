/** report.md: the notes, the vanilla vs ADDT table and links to the PNG grids beside it (plots: report.html). */
import { countText, deltaText, durationText, hasMeanK, pointText } from "./format.ts";
import { evalWarnings } from "./html.ts";
import { epsPlot, lossSummary, stochasticPlot } from "./plots.ts";
import type { MainReport } from "./types.ts";

/** Text safe inside a Markdown table cell (pipes, backslashes, raw HTML, line breaks). */
export function mdCell(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/</g, "&lt;").replace(/\r?\n/g, " ");
}

/** Text safe inside the brackets of a Markdown link. */
const mdLinkText = (s: string) => mdCell(s).replace(/([[\]])/g, "\\$1");

export function mainReportMarkdown(report: MainReport): string {
  const out: string[] = [`# ${mdCell(report.title)}`, ""];
  out.push(
    `Started ${report.started}, wall ${durationText(report.wallSeconds)}, commit \`${report.commit}\`, ` +
      `seed ${report.seed}, adapter ${mdCell(report.adapter.description)} (${report.adapter.backend}).`,
    "",
  );
  const notes = [...report.notes, ...evalWarnings(report).map((w) => `Warning: ${w}`)];
  if (notes.length) out.push(...notes.map((n) => `- ${mdCell(n)}`), "");
  out.push(
    "## Models",
    "",
    `- vanilla: ${mdCell(report.models.vanilla)}`,
    `- ADDT: ${mdCell(report.models.addt)}`,
    `- classifier: ${mdCell(report.models.classifier)}`,
    "",
    "## Results",
    "",
  );
  if (report.rows.length === 0) out.push("No evaluation rows.", "");
  else {
    const meanK = hasMeanK(report.rows);
    const head = ["Defense", "Attack", "Vanilla", "ADDT", "ADDT - vanilla (pp)", "n"]
      .concat(meanK ? ["Vanilla mean over K", "ADDT mean over K"] : []);
    out.push(`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < 2 ? " --- " : " ---: ")).join("|")}|`);
    for (const r of report.rows) {
      const cells = [
        r.defense,
        r.label,
        pointText(r.vanilla),
        pointText(r.addt),
        deltaText(r.vanilla, r.addt),
      ]
        .concat(countText(r))
        .concat(meanK ? [r.vanillaMeanK, r.addtMeanK].map((p) => (p ? pointText(p) : "")) : []);
      out.push(`| ${cells.map(mdCell).join(" | ")} |`);
    }
    out.push(
      "",
      "Accuracy with its 95% Wilson interval in brackets; n test images; one evaluation of each final " +
        "image with fresh randomness (the paper's protocol).",
      "",
    );
  }
  const loss = lossSummary(report);
  out.push("## Fine-tuning", "", loss ? `Loss curve: ${loss}` : "No fine-tuning loss curve in this run.", "");
  const skipped = [epsPlot(report), stochasticPlot(report)].flatMap((
    p,
  ) => (p.svg === null && p.note ? [p.note] : []));
  out.push(
    "## Plots",
    "",
    "The plots are in report.html (inline SVG).",
    ...skipped.map((s) => `- ${mdCell(s)}`),
    "",
  );
  if (report.timings.length) {
    out.push("## Timings", "", "| Stage | Time |", "| --- | ---: |");
    for (const t of report.timings) out.push(`| ${mdCell(t.stage)} | ${durationText(t.seconds)} |`);
    out.push(`| total (wall) | ${durationText(report.wallSeconds)} |`, "");
  }
  if (report.images.length) {
    out.push("## Images", "");
    for (const g of report.images) {
      out.push(`### ${mdCell(g.title)}`, "", `![${mdLinkText(g.title)}](${encodeURI(g.file)})`, "");
      if (g.caption) out.push(mdCell(g.caption), "");
    }
  }
  out.push("## Configuration", "", "```json", JSON.stringify(report.config, null, 2), "```", "");
  return out.join("\n");
}
