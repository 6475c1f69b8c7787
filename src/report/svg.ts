/**
 * Small SVG charts for the reports: axes with ticks and labels, grouped bars with 95% interval whiskers,
 * lines with markers and interval bands, a legend and a title; every text escaped.
 *
 * Why we draw SVG ourselves instead of using an npm plotting library: the report needs four simple charts
 * (grouped bars and lines with intervals) rendered in Deno without a browser and embedded inline in one
 * self-contained HTML file. The npm libraries that can do that are a poor fit: vega/vega-lite render SVG
 * headlessly but bring a large dependency tree (d3 modules, a parser, a runtime, optional node-canvas) and a
 * spec language for what is a few hundred lines here; d3 only computes scales and paths and needs a DOM
 * (jsdom) to build the SVG; plotly.js needs a browser to lay out and render at all. Drawing the SVG as
 * strings adds no runtime dependency, gives byte-stable output that tests can read (every data mark carries
 * class="mark" and its data-value/lo/hi), and keeps the report free of scripts.
 */

/** Escape text for XML/HTML text and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&#39;",
  );
}

/** A string usable as an id: lower case letters, digits and dashes. */
export function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "x";
}

/** A number in a short form for ticks and labels (3 significant digits, no float noise). */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(1);
  return String(+v.toPrecision(3));
}

/** Accuracy fractions shown as percent on an axis. */
export const percentTick = (v: number): string => `${+(v * 100).toPrecision(3)}%`;

/** Coordinates with 2 decimals: smaller files, same picture. */
const c2 = (v: number) => String(Math.round(v * 100) / 100);

/** The step of `target`-ish ticks over `span`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5]) if (m * p >= raw * (1 - 1e-9)) return m * p;
  return 10 * p;
}

/** Ticks covering [min, max], with the domain widened to the outer ticks. */
export function niceTicks(
  min: number,
  max: number,
  target = 5,
): { min: number; max: number; ticks: number[] } {
  if (!(Number.isFinite(min) && Number.isFinite(max))) return { min: 0, max: 1, ticks: [0, 0.5, 1] };
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    const pad = Math.abs(min) * 0.1 || 1;
    [min, max] = [min - pad, max + pad];
  }
  const step = niceStep(max - min, target);
  const lo = Math.floor(min / step + 1e-9) * step, hi = Math.ceil(max / step - 1e-9) * step;
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 2);
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) ticks.push(+(lo + i * step).toFixed(digits));
  return { min: ticks[0], max: ticks[ticks.length - 1], ticks };
}

/** Powers of ten over [min, max] (min > 0), with 2 and 5 in between when there are few decades. */
export function logTicks(min: number, max: number): { min: number; max: number; ticks: number[] } {
  const a = Math.floor(Math.log10(min)), b = Math.ceil(Math.log10(max));
  const decades = Math.max(1, b - a);
  const mults = decades <= 2 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = a; e <= b; e++) {
    for (const m of mults) {
      const v = +(m * 10 ** e).toPrecision(3);
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(v);
    }
  }
  // an axis with fewer than two labelled ticks reads badly: label the data ends instead
  if (ticks.length < 2) return { min, max, ticks: [min, max] };
  return { min, max, ticks };
}

export interface AxisSpec {
  label: string;
  /** A fixed domain end; otherwise taken from the data and widened to nice ticks. */
  min?: number;
  max?: number;
  /** Logarithmic scale (only when every value is > 0). */
  log?: boolean;
  format?: (v: number) => string;
}

/** A value with an optional 95% interval, as drawn by a bar or a line point. */
export interface Estimate {
  value: number;
  lo?: number;
  hi?: number;
  /** Hover text (an SVG <title>). */
  title?: string;
}

export interface BarSeries {
  name: string;
  color: string;
  /** One estimate per group; null leaves a gap. */
  values: (Estimate | null)[];
}

export interface BarChartSpec {
  id: string;
  title: string;
  groups: string[];
  series: BarSeries[];
  y: AxisSpec;
  /** Minimum width; the chart grows with the number of bars. */
  width?: number;
  height?: number;
}

/** A point of a line: y is `value`. */
export interface LinePoint extends Estimate {
  x: number;
}

export interface LineSeries {
  name: string;
  color: string;
  points: LinePoint[];
  /** stroke-dasharray, e.g. "6 3". */
  dash?: string;
  /** Draw a circle at each point (default true). */
  markers?: boolean;
  strokeWidth?: number;
  opacity?: number;
}

export interface LineChartSpec {
  id: string;
  title: string;
  series: LineSeries[];
  x: AxisSpec;
  y: AxisSpec;
  width?: number;
  height?: number;
}

/** The plot area inside the chart, in pixels. */
interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
}

interface Scale {
  at: (v: number) => number;
  ticks: number[];
  format: (v: number) => string;
}

const FONT = 11;
const textWidth = (s: string, size = FONT) => s.length * size * 0.6;

function scaleFor(axis: AxisSpec, values: number[], from: number, to: number): Scale {
  const finite = values.filter((v) => Number.isFinite(v) && (!axis.log || v > 0));
  const dataMin = finite.length ? Math.min(...finite) : 0, dataMax = finite.length ? Math.max(...finite) : 1;
  const format = axis.format ?? formatNumber;
  if (axis.log && (axis.min ?? dataMin) > 0) {
    const t = logTicks(axis.min ?? dataMin, axis.max ?? dataMax);
    const [l0, l1] = [Math.log10(t.min), Math.log10(t.max)];
    const span = l1 - l0 || 1;
    const at = (v: number) => from + (to - from) * (Math.log10(Math.max(v, t.min * 1e-6)) - l0) / span;
    return { at: clampTo(at, from, to), ticks: t.ticks, format };
  }
  const t = axis.min !== undefined && axis.max !== undefined
    ? { min: axis.min, max: axis.max, ticks: niceTicks(axis.min, axis.max).ticks }
    : niceTicks(axis.min ?? dataMin, axis.max ?? dataMax);
  const span = t.max - t.min || 1;
  const at = (v: number) => from + (to - from) * (v - t.min) / span;
  return { at: clampTo(at, from, to), ticks: t.ticks.filter((v) => v >= t.min && v <= t.max), format };
}

/** Values outside the domain are drawn at its edge, so a mark never leaves the axes. */
function clampTo(at: (v: number) => number, a: number, b: number): (v: number) => number {
  const lo = Math.min(a, b), hi = Math.max(a, b);
  return (v) => Math.min(hi, Math.max(lo, Number.isFinite(v) ? at(v) : a));
}

interface LegendItem {
  name: string;
  color: string;
  kind: "bar" | "line";
  dash?: string;
}

/** Legend rows below the title; returns the markup and its height. */
function legend(
  items: LegendItem[],
  left: number,
  top: number,
  width: number,
): { svg: string; height: number } {
  if (items.length === 0) return { svg: "", height: 0 };
  const parts: string[] = [];
  let x = left, y = top;
  for (const item of items) {
    const w = 22 + textWidth(item.name) + 16;
    if (x > left && x + w > left + width) [x, y] = [left, y + 16];
    const swatch = item.kind === "bar"
      ? `<rect x="${c2(x)}" y="${c2(y - 9)}" width="14" height="10" fill="${escapeXml(item.color)}"/>`
      : `<line x1="${c2(x)}" y1="${c2(y - 4)}" x2="${c2(x + 16)}" y2="${c2(y - 4)}" stroke="${
        escapeXml(item.color)
      }" stroke-width="2"${item.dash ? ` stroke-dasharray="${escapeXml(item.dash)}"` : ""}/>`;
    parts.push(
      `<g class="legend-item">${swatch}<text x="${c2(x + 20)}" y="${c2(y)}">${
        escapeXml(item.name)
      }</text></g>`,
    );
    x += w;
  }
  return { svg: `<g class="legend">${parts.join("")}</g>`, height: y - top + 16 };
}

/** Horizontal grid lines, the y ticks with labels, the axis lines and the y axis title. */
function yAxis(frame: Frame, y: Scale, label: string): string {
  const right = frame.left + frame.width, bottom = frame.top + frame.height;
  const ticks = y.ticks.map((v) => {
    const py = c2(y.at(v));
    return `<line class="grid" x1="${c2(frame.left)}" y1="${py}" x2="${
      c2(right)
    }" y2="${py}" stroke="#e4e4e4"/>` +
      `<text class="tick-label" x="${c2(frame.left - 6)}" y="${py}" dy="0.32em" text-anchor="end">${
        escapeXml(y.format(v))
      }</text>`;
  });
  const cy = frame.top + frame.height / 2;
  return `<g class="axis y-axis">${ticks.join("")}` +
    `<line class="axis-line" x1="${c2(frame.left)}" y1="${c2(frame.top)}" x2="${c2(frame.left)}" y2="${
      c2(bottom)
    }" stroke="#333"/>` +
    `<line class="axis-line" x1="${c2(frame.left)}" y1="${c2(bottom)}" x2="${c2(right)}" y2="${
      c2(bottom)
    }" stroke="#333"/>` +
    `<text class="axis-title" transform="translate(14 ${c2(cy)}) rotate(-90)" text-anchor="middle">${
      escapeXml(label)
    }</text></g>`;
}

function frameRect(frame: Frame): string {
  return `<rect class="frame" x="${c2(frame.left)}" y="${c2(frame.top)}" width="${c2(frame.width)}" height="${
    c2(frame.height)
  }" fill="none"/>`;
}

function svgRoot(id: string, title: string, width: number, height: number, body: string): string {
  const tid = `${id}-title`;
  return `<svg id="${escapeXml(id)}" class="plot" xmlns="http://www.w3.org/2000/svg" width="${c2(width)}" ` +
    `height="${c2(height)}" viewBox="0 0 ${c2(width)} ${c2(height)}" role="img" aria-labelledby="${
      escapeXml(tid)
    }" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" font-size="${FONT}" fill="#222">` +
    `<title id="${escapeXml(tid)}">${escapeXml(title)}</title>` +
    `<rect class="background" width="100%" height="100%" fill="#fff"/>` +
    `<text class="chart-title" x="${c2(width / 2)}" y="18" text-anchor="middle" font-size="14" ` +
    `font-weight="600">${escapeXml(title)}</text>${body}</svg>`;
}

/** Split a label into lines of about `max` characters at spaces. */
export function wrapLabel(label: string, max: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of label.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > max) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

const dataAttrs = (e: Estimate) =>
  ` data-value="${e.value}"` + (e.lo !== undefined ? ` data-lo="${e.lo}"` : "") +
  (e.hi !== undefined ? ` data-hi="${e.hi}"` : "");

const hover = (e: Estimate) => (e.title ? `<title>${escapeXml(e.title)}</title>` : "");

/** A whisker from lo to hi with caps, drawn at x. */
function whisker(x: number, lo: number, hi: number, cap: number): string {
  const [xa, xb] = [c2(x - cap), c2(x + cap)];
  return `<line class="whisker" x1="${c2(x)}" y1="${c2(lo)}" x2="${c2(x)}" y2="${c2(hi)}" stroke="#222"/>` +
    `<line class="cap" x1="${xa}" y1="${c2(lo)}" x2="${xb}" y2="${c2(lo)}" stroke="#222"/>` +
    `<line class="cap" x1="${xa}" y1="${c2(hi)}" x2="${xb}" y2="${c2(hi)}" stroke="#222"/>`;
}

/** Grouped vertical bars (one group per category, one bar per series) with interval whiskers. */
export function barChart(spec: BarChartSpec): string {
  const nSeries = Math.max(1, spec.series.length), barW = 18;
  const groupW = Math.max(72, nSeries * barW + 24);
  const labelLines = spec.groups.map((g) => wrapLabel(g, Math.floor((groupW - 6) / (FONT * 0.6))));
  const maxLines = Math.max(1, ...labelLines.map((l) => l.length));
  const left = 60, right = 16;
  const width = Math.max(spec.width ?? 560, left + right + spec.groups.length * groupW);
  const leg = legend(
    spec.series.map((s) => ({ name: s.name, color: s.color, kind: "bar" as const })),
    left,
    40,
    width - left - right,
  );
  const top = 40 + leg.height + 6, bottom = 14 + maxLines * 13;
  const height = Math.max(spec.height ?? 320, top + bottom + 160);
  const frame: Frame = { left, top, width: width - left - right, height: height - top - bottom };
  const estimates = spec.series.flatMap((s) => s.values.filter((v): v is Estimate => v !== null));
  const y = scaleFor(
    spec.y,
    estimates.flatMap((e) => [e.value, e.lo ?? e.value, e.hi ?? e.value, 0]),
    frame.top + frame.height,
    frame.top,
  );
  const base = y.at(Math.max(0, spec.y.min ?? 0));
  const slot = frame.width / Math.max(1, spec.groups.length);
  const bars: string[] = [], labels: string[] = [];
  spec.groups.forEach((_, g) => {
    const cx = frame.left + slot * (g + 0.5), x0 = cx - (nSeries * barW) / 2;
    spec.series.forEach((s, k) => {
      const e = s.values[g];
      if (!e || !Number.isFinite(e.value)) return;
      const x = x0 + k * barW + 1, w = barW - 2, top = y.at(e.value);
      bars.push(
        `<rect class="mark bar" x="${c2(x)}" y="${c2(Math.min(top, base))}" width="${c2(w)}" height="${
          c2(Math.abs(base - top))
        }" fill="${escapeXml(s.color)}"${dataAttrs(e)}>${hover(e)}</rect>`,
      );
      if (e.lo !== undefined && e.hi !== undefined) bars.push(whisker(x + w / 2, y.at(e.lo), y.at(e.hi), 3));
    });
    const ly = frame.top + frame.height + 14;
    labels.push(
      `<text class="group-label" x="${c2(cx)}" y="${c2(ly)}" text-anchor="middle">` +
        labelLines[g].map((l, i) => `<tspan x="${c2(cx)}" dy="${i === 0 ? 0 : 13}">${escapeXml(l)}</tspan>`)
          .join("") +
        `</text>`,
    );
  });
  const body = leg.svg + frameRect(frame) + yAxis(frame, y, spec.y.label) +
    `<g class="marks">${bars.join("")}</g><g class="x-axis">${labels.join("")}</g>`;
  return svgRoot(spec.id, spec.title, width, height, body);
}

/** Lines over a numeric x axis, with markers and shaded interval bands where points carry lo/hi. */
export function lineChart(spec: LineChartSpec): string {
  const left = 64, right = 20, width = spec.width ?? 560;
  const leg = legend(
    spec.series.map((s) => ({ name: s.name, color: s.color, kind: "line" as const, dash: s.dash })),
    left,
    40,
    width - left - right,
  );
  const top = 40 + leg.height + 6, bottom = 44;
  const height = Math.max(spec.height ?? 320, top + bottom + 160);
  const frame: Frame = { left, top, width: width - left - right, height: height - top - bottom };
  const pts = spec.series.flatMap((s) => s.points);
  const x = scaleFor(spec.x, pts.map((p) => p.x), frame.left, frame.left + frame.width);
  const y = scaleFor(
    spec.y,
    pts.flatMap((p) => [p.value, p.lo ?? p.value, p.hi ?? p.value]),
    frame.top + frame.height,
    frame.top,
  );
  const bands: string[] = [], lines: string[] = [];
  for (const s of spec.series) {
    const p = s.points.filter((q) => Number.isFinite(q.x) && Number.isFinite(q.value));
    if (p.length === 0) continue;
    const color = escapeXml(s.color), opacity = s.opacity ?? 1;
    const withBand = p.filter((q) => q.lo !== undefined && q.hi !== undefined);
    if (withBand.length >= 2) {
      const upper = withBand.map((q, i) => `${i ? "L" : "M"}${c2(x.at(q.x))} ${c2(y.at(q.hi!))}`);
      const lower = withBand.slice().reverse().map((q) => `L${c2(x.at(q.x))} ${c2(y.at(q.lo!))}`);
      bands.push(
        `<path class="band" d="${upper.join("")}${lower.join("")}Z" fill="${color}" fill-opacity="0.15"/>`,
      );
    }
    const d = p.map((q, i) => `${i ? "L" : "M"}${c2(x.at(q.x))} ${c2(y.at(q.value))}`).join("");
    lines.push(
      `<path class="mark line" d="${d}" fill="none" stroke="${color}" stroke-width="${s.strokeWidth ?? 2}"` +
        `${s.dash ? ` stroke-dasharray="${escapeXml(s.dash)}"` : ""} stroke-opacity="${opacity}">` +
        `<title>${escapeXml(s.name)}</title></path>`,
    );
    if (s.markers ?? true) {
      for (const q of p) {
        lines.push(
          `<circle class="mark marker" cx="${c2(x.at(q.x))}" cy="${
            c2(y.at(q.value))
          }" r="3.5" fill="${color}" ` +
            `stroke="#fff" data-x="${q.x}"${dataAttrs(q)}>${hover(q)}</circle>`,
        );
      }
    }
  }
  const bottomY = frame.top + frame.height;
  const xTicks = x.ticks.map((v) =>
    `<line class="tick" x1="${c2(x.at(v))}" y1="${c2(bottomY)}" x2="${c2(x.at(v))}" y2="${
      c2(bottomY + 4)
    }" ` +
    `stroke="#333"/><text class="tick-label" x="${c2(x.at(v))}" y="${
      c2(bottomY + 16)
    }" text-anchor="middle">${escapeXml(x.format(v))}</text>`
  );
  const body = leg.svg + frameRect(frame) + yAxis(frame, y, spec.y.label) +
    `<g class="axis x-axis">${xTicks.join("")}<text class="axis-title" x="${
      c2(frame.left + frame.width / 2)
    }" y="${c2(bottomY + 36)}" text-anchor="middle">${escapeXml(spec.x.label)}</text></g>` +
    `<g class="bands">${bands.join("")}</g><g class="marks">${lines.join("")}</g>`;
  return svgRoot(spec.id, spec.title, width, height, body);
}
