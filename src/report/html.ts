/**
 * The self-contained report.html: inline CSS, inline SVG plots and the PNG grids embedded as data URIs, so
 * the file can be mailed or archived alone and opens offline. No scripts and no external resources.
 */
import { escapeXml as esc, slug } from "./svg.ts";
import { countText, deltaText, durationText, hasMeanK, pointText } from "./format.ts";
import { mainPlots, type Plot } from "./plots.ts";
import type { ComparisonRow, ImageGrid, MainReport } from "./types.ts";

/** An image grid with its bytes read from the report folder (null bytes: missing or unreadable). */
export interface LoadedImage {
  grid: ImageGrid;
  bytes: Uint8Array | null;
  /** Why bytes is null, or why the file is not shown. */
  problem?: string;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Width and height from a PNG's IHDR chunk; null when the bytes are not a PNG. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } | null {
  if (bytes.length < 24 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = view.getUint32(16), height = view.getUint32(20);
  return width > 0 && height > 0 ? { width, height } : null;
}

export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  // chunks keep String.fromCharCode below the engine's argument limit
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Read the report's grids from `dir`; a missing or broken file becomes a problem, not an exception. */
export function loadImages(dir: string, grids: ImageGrid[]): Promise<LoadedImage[]> {
  return Promise.all(grids.map(async (grid) => {
    try {
      const bytes = await Deno.readFile(`${dir}/${grid.file}`);
      return pngSize(bytes) ? { grid, bytes } : { grid, bytes: null, problem: "not a PNG file" };
    } catch (e) {
      const problem = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
      return { grid, bytes: null, problem };
    }
  }));
}

const CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
  margin: 0 auto; padding: 16px 24px 48px; max-width: 1200px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
  border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; margin: 0 0 12px; }
ul.notes li { margin: 2px 0; } .warning { color: #a33; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; white-space: nowrap; }
td.up { color: #1a7f37; } td.down { color: #b42318; }
figure { margin: 12px 0 20px; }
.plots { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
.plots figure { flex: 0 1 auto; max-width: 100%; } figcaption { color: #555; font-size: 13px; margin-top: 4px; max-width: 900px; }
svg.plot { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
.note { background: #fff8e1; border-left: 3px solid #f0b400; padding: 6px 10px; margin: 8px 0; }
.grids { display: flex; flex-wrap: wrap; gap: 20px; }
img.grid-image { image-rendering: pixelated; border: 1px solid #ccc; background: #000; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; } dt { color: #555; }
`;

function resultsTable(rows: ComparisonRow[]): string {
  if (rows.length === 0) return `<p class="note" id="note-results">No evaluation rows.</p>`;
  const meanK = hasMeanK(rows);
  const head = ["Defense", "Attack", "Vanilla", "ADDT", "ADDT \u2212 vanilla (pp)", "n"]
    .concat(meanK ? ["Vanilla mean over K", "ADDT mean over K"] : []);
  const body = rows.map((r) => {
    const d = r.addt.acc - r.vanilla.acc;
    const cells = [
      `<td>${esc(r.defense)}</td>`,
      `<td>${esc(r.label)}</td>`,
      `<td class="num">${esc(pointText(r.vanilla))}</td>`,
      `<td class="num">${esc(pointText(r.addt))}</td>`,
      `<td class="num ${d > 0 ? "up" : d < 0 ? "down" : ""}">${esc(deltaText(r.vanilla, r.addt))}</td>`,
      `<td class="num">${esc(countText(r))}</td>`,
    ];
    if (meanK) {
      for (const p of [r.vanillaMeanK, r.addtMeanK]) {
        cells.push(`<td class="num">${p ? esc(pointText(p)) : ""}</td>`);
      }
    }
    return `<tr>${cells.join("")}</tr>`;
  });
  return `<table id="results"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead>` +
    `<tbody>${body.join("\n")}</tbody></table>` +
    `<p class="meta">Accuracy with its 95% Wilson interval in brackets; n test images. ` +
    `One evaluation of each final image with fresh randomness (the paper's protocol).</p>`;
}

function plotFigure(plot: Plot): string {
  const note = plot.note ? `<p class="note" id="note-${esc(plot.id)}">${esc(plot.note)}</p>` : "";
  if (plot.svg === null) return `<figure class="plot-figure missing">${note}</figure>`;
  // the figure takes the chart's width so the caption wraps under it
  const width = /<svg\b[^>]*?\swidth="([\d.]+)"/.exec(plot.svg)?.[1];
  const style = width ? ` style="width: ${width}px"` : "";
  return `<figure class="plot-figure"${style}>${plot.svg}<figcaption>${
    esc(plot.caption)
  }</figcaption>${note}</figure>`;
}

function imageFigures(images: LoadedImage[]): string {
  if (images.length === 0) return `<p class="note" id="note-images">No image grids in this run.</p>`;
  const used = new Set<string>();
  const figures = images.map(({ grid, bytes, problem }) => {
    if (bytes === null) {
      return `<p class="note">Image grid "${esc(grid.title)}" (${esc(grid.file)}) not shown: ${
        esc(problem ?? "unreadable")
      }.</p>`;
    }
    let id = `img-${slug(grid.file.replace(/\.png$/i, ""))}`;
    for (let k = 2; used.has(id); k++) id = `img-${slug(grid.file)}-${k}`;
    used.add(id);
    const size = pngSize(bytes)!;
    // small grids (28x28 digits) are scaled up by a whole factor so pixels stay sharp
    const scale = Math.max(1, Math.min(4, Math.floor(320 / size.width)));
    return `<figure class="grid-figure" style="width: ${
      size.width * scale
    }px"><img id="${id}" class="grid-image" alt="${esc(grid.title)}" ` +
      `width="${size.width * scale}" height="${size.height * scale}" ` +
      `src="data:image/png;base64,${toBase64(bytes)}"><figcaption><strong>${esc(grid.title)}</strong>` +
      `${grid.caption ? ` \u2014 ${esc(grid.caption)}` : ""}</figcaption></figure>`;
  });
  return `<div class="grids">${figures.join("\n")}</div>`;
}

function details(report: MainReport): string {
  const timings = report.timings.map((t) =>
    `<tr><td>${esc(t.stage)}</td><td class="num">${esc(durationText(t.seconds))}</td></tr>`
  );
  timings.push(`<tr><th>total (wall)</th><th class="num">${esc(durationText(report.wallSeconds))}</th></tr>`);
  const dl = [
    ["Vanilla model", report.models.vanilla],
    ["ADDT model", report.models.addt],
    ["Classifier", report.models.classifier],
    ["Seed", String(report.seed)],
    ["Commit", report.commit],
    [
      "Adapter",
      `${report.adapter.description} (${report.adapter.backend}${
        report.adapter.isSoftware ? ", software" : ""
      })`,
    ],
    ["Started", report.started],
  ].map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`);
  return `<h2>Run</h2><dl id="run">${dl.join("")}</dl>` +
    `<h3>Timings</h3><table id="timings"><tbody>${timings.join("")}</tbody></table>` +
    `<h3>Configuration</h3><pre id="config">${esc(JSON.stringify(report.config, null, 2))}</pre>`;
}

/** Warnings of the evaluations' sanity checks (src/eval/report.ts), with the model and defense. */
export function evalWarnings(report: MainReport): string[] {
  return report.evals.flatMap((e) =>
    (e.report?.sanity?.warnings ?? []).map((w) => `${e.model} ${e.defense}: ${w}`)
  );
}

/** The whole page. `plots` defaults to the report's four plots. */
export function renderMainReportHtml(
  report: MainReport,
  images: LoadedImage[],
  plots: Plot[] = mainPlots(report),
): string {
  const notes = report.notes.map((n) => `<li>${esc(n)}</li>`)
    .concat(evalWarnings(report).map((w) => `<li class="warning">${esc(w)}</li>`));
  const meta = [
    `started ${report.started}`,
    `wall ${durationText(report.wallSeconds)}`,
    `commit ${report.commit.slice(0, 12)}`,
    report.adapter.description,
  ].join(" \u00b7 ");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(report.title)}</title><style>${CSS}</style></head>
<body>
<h1>${esc(report.title)}</h1>
<p class="meta">${esc(meta)}</p>
${notes.length ? `<ul class="notes" id="notes">${notes.join("")}</ul>` : ""}
<h2>Results</h2>
${resultsTable(report.rows)}
<h2>Plots</h2>
<div class="plots">${plots.map(plotFigure).join("\n")}</div>
<h2>Images</h2>
${imageFigures(images)}
${details(report)}
</body></html>
`;
}
