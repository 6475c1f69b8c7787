/**
 * Main-job reports: report.json, report.md and a self-contained report.html with SVG plots (drawn by
 * ./svg.ts) and the PNG image grids embedded.
 */
export * from "./types.ts";
export { mainReportJson, writeMainReport } from "./write.ts";
export { mainReportMarkdown, mdCell } from "./markdown.ts";
export { evalWarnings, type LoadedImage, loadImages, pngSize, renderMainReportHtml } from "./html.ts";
export {
  chooseSweep,
  COLORS,
  epsPlot,
  lossPlot,
  lossSummary,
  mainPlots,
  type Plot,
  robustPlots,
  type StochasticPair,
  stochasticPairs,
  stochasticPlot,
  sweepKey,
} from "./plots.ts";
export {
  type AxisSpec,
  barChart,
  type BarChartSpec,
  type BarSeries,
  escapeXml,
  type Estimate,
  lineChart,
  type LineChartSpec,
  type LinePoint,
  type LineSeries,
  niceTicks,
} from "./svg.ts";
export { countText, deltaText, durationText, percent, pointText } from "./format.ts";
