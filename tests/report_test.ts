/**
 * The main report without a browser: SVG geometry (marks at their values, intervals inside the axes), the
 * plots built from the rows (which rows pair up, which form the eps sweep), escaping, the numbers in the
 * Markdown and HTML, notes instead of crashes on empty data, and the three files written atomically.
 */
import {
  barChart,
  type ComparisonRow,
  epsPlot,
  lineChart,
  lossPlot,
  mainPlots,
  type MainReport,
  mainReportMarkdown,
  niceTicks,
  pointText,
  renderMainReportHtml,
  robustPlots,
  stochasticPairs,
  stochasticPlot,
  sweepKey,
  writeMainReport,
} from "../src/report/mod.ts";
import { deltaText } from "../src/report/format.ts";
import { assert, assertEquals, fixtureReport, point, writeFixture } from "./report_fixture.ts";
import { freshSeed, rng } from "./util.ts";

type Attrs = Record<string, string>;

/** Attributes of every `<tag ...>` whose class list contains `cls`. */
function elements(svg: string, tag: string, cls: string): Attrs[] {
  const out: Attrs[] = [];
  for (const m of svg.matchAll(new RegExp(`<${tag}\\b([^>]*)>`, "g"))) {
    const attrs: Attrs = {};
    for (const a of m[1].matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1]] = a[2];
    if ((attrs.class ?? "").split(" ").includes(cls)) out.push(attrs);
  }
  return out;
}

function frameOf(svg: string) {
  const f = elements(svg, "rect", "frame");
  assertEquals(f.length, 1, "one frame per chart");
  const [x, y, w, h] = ["x", "y", "width", "height"].map((k) => Number(f[0][k]));
  return { left: x, top: y, right: x + w, bottom: y + h, height: h, width: w };
}

const near = (a: number, b: number, tol = 0.02) => Math.abs(a - b) <= tol;

Deno.test("niceTicks: cover the range with steps of 1, 2, 2.5 or 5 times a power of ten", () => {
  const seed = freshSeed(), r = rng(seed);
  for (let i = 0; i < 300; i++) {
    const scale = 10 ** Math.floor(r() * 8 - 4);
    const a = (r() * 2 - 1) * scale, b = a + r() * scale * 10 + scale * 1e-3;
    const t = niceTicks(a, b);
    const at = `seed ${seed}, range [${a}, ${b}], ticks ${t.ticks}`;
    assert(t.ticks.length >= 2 && t.ticks.length <= 12, `tick count: ${at}`);
    assert(t.min <= a + 1e-12 * scale && t.max >= b - 1e-12 * scale, `cover: ${at}`);
    const step = t.ticks[1] - t.ticks[0];
    const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
    assert([1, 2, 2.5, 5].some((m) => near(mantissa, m, 1e-6)), `step ${step}: ${at}`);
    t.ticks.forEach((v, k) => assert(near(v, t.ticks[0] + k * step, step * 1e-6), `even spacing: ${at}`));
  }
});

Deno.test("barChart: each bar ends at its value and its whisker spans [lo, hi], inside the axes", () => {
  const seed = freshSeed(), r = rng(seed);
  const groups = ["a", "b", "c", "d", "e"];
  const series = [0, 1, 2].map((k) => ({
    name: `s${k}`,
    color: "#123456",
    values: groups.map(() => {
      const value = r(), lo = Math.max(0, value - r() * 0.2), hi = Math.min(1, value + r() * 0.2);
      return { value, lo, hi };
    }),
  }));
  // one value outside the axis (a broken number must not draw outside the chart)
  series[0].values[1] = { value: 1.4, lo: -0.3, hi: 1.7 };
  const svg = barChart({ id: "t", title: "t", groups, series, y: { label: "acc", min: 0, max: 1 } });
  const f = frameOf(svg);
  const bars = elements(svg, "rect", "mark"), whiskers = elements(svg, "line", "whisker");
  assertEquals(bars.length, 15, `bars (seed ${seed})`);
  assertEquals(whiskers.length, 15, `whiskers (seed ${seed})`);
  const yOf = (v: number) => f.bottom - f.height * Math.min(1, Math.max(0, v));
  bars.forEach((b, i) => {
    const v = Number(b["data-value"]), top = Number(b.y), bottom = top + Number(b.height);
    assert(
      near(top, yOf(v)) && near(bottom, f.bottom),
      `bar ${i} [${top}, ${bottom}] for ${v} (seed ${seed})`,
    );
    const w = whiskers[i], [y1, y2] = [Number(w.y1), Number(w.y2)];
    assert(
      near(y1, yOf(Number(b["data-lo"]))) && near(y2, yOf(Number(b["data-hi"]))),
      `whisker ${i} (seed ${seed})`,
    );
    for (const y of [top, y1, y2]) {
      assert(y >= f.top - 1e-9 && y <= f.bottom + 1e-9, `inside axes (seed ${seed})`);
    }
    const x = Number(b.x);
    assert(x >= f.left && x + Number(b.width) <= f.right, `bar ${i} x inside (seed ${seed})`);
  });
});

Deno.test("lineChart: markers at (x, y), bands inside the axes; log scale keeps the order", () => {
  const seed = freshSeed(), r = rng(seed);
  const points = [0.1, 0.2, 0.3, 0.4].map((x) => {
    const value = r();
    return { x, value, lo: value * 0.8, hi: Math.min(1, value * 1.2) };
  });
  const svg = lineChart({
    id: "l",
    title: "l",
    series: [{ name: "s", color: "#000", points }],
    x: { label: "eps", min: 0.1, max: 0.4 },
    y: { label: "acc", min: 0, max: 1 },
  });
  const f = frameOf(svg);
  const markers = elements(svg, "circle", "marker");
  assertEquals(markers.length, 4, `markers (seed ${seed})`);
  markers.forEach((m, i) => {
    const x = f.left + f.width * (points[i].x - 0.1) / 0.3, y = f.bottom - f.height * points[i].value;
    assert(
      near(Number(m.cx), x) && near(Number(m.cy), y),
      `marker ${i} at ${m.cx},${m.cy} not ${x},${y} (${seed})`,
    );
  });
  const band = elements(svg, "path", "band");
  assertEquals(band.length, 1, "one band");
  for (const [, x, y] of band[0].d.matchAll(/[ML]([\d.]+) ([\d.]+)/g)) {
    assert(Number(x) >= f.left - 1e-9 && Number(x) <= f.right + 1e-9, `band x ${x} (seed ${seed})`);
    assert(Number(y) >= f.top - 1e-9 && Number(y) <= f.bottom + 1e-9, `band y ${y} (seed ${seed})`);
  }
  const logSvg = lineChart({
    id: "g",
    title: "g",
    series: [{ name: "s", color: "#000", points: [1, 2, 3].map((x) => ({ x, value: 10 ** -x })) }],
    x: { label: "x" },
    y: { label: "y", log: true },
  });
  const cy = elements(logSvg, "circle", "marker").map((m) => Number(m.cy));
  const g = frameOf(logSvg);
  assert(near(cy[1] - cy[0], cy[2] - cy[1], 0.05), `log scale: equal steps per decade ${cy}`);
  assert(cy[0] >= g.top && cy[2] <= g.bottom && cy[0] < cy[2], `log scale inside, decreasing ${cy}`);
});

Deno.test("plots from the fixture: ids, marks per plot, the eps sweep and the DW_Both pairs", () => {
  const report = fixtureReport();
  const plots = mainPlots(report);
  const ids = plots.map((p) => p.id);
  assertEquals(ids, [
    "plot-robust-dp-ddpm",
    "plot-robust-dp-ddim",
    "plot-eps",
    "plot-stochastic",
    "plot-loss",
  ], "ids");
  for (const p of plots) {
    assert(p.svg !== null && p.svg.includes(`<svg id="${p.id}"`), `plot ${p.id} drawn with its id`);
  }
  const [ddpm, ddim, eps, stochastic, loss] = plots.map((p) => p.svg!);
  const rowsOf = (d: string) => report.rows.filter((r) => r.defense === d);
  assertEquals(elements(ddpm, "rect", "mark").length, 2 * rowsOf("DP_DDPM").length, "DP_DDPM bars");
  assertEquals(elements(ddim, "rect", "mark").length, 2 * rowsOf("DP_DDIM").length, "DP_DDIM bars");
  // the bars carry the rows' numbers, vanilla series first
  const ddpmValues = elements(ddpm, "rect", "mark").map((b) => Number(b["data-value"]));
  const expected = [
    ...rowsOf("DP_DDPM").map((r) => r.vanilla.acc),
    ...rowsOf("DP_DDPM").map((r) => r.addt.acc),
  ];
  assertEquals(ddpmValues.sort(), expected.sort(), "DP_DDPM bar values");

  // the sweep: PGD-20 EOT-10 Linf fresh on DP_DDPM at 0.1, 0.2, 0.3 (DP_DDIM has one point: no line)
  const markers = elements(eps, "circle", "marker");
  assertEquals(markers.map((m) => Number(m["data-x"])), [0.1, 0.2, 0.3, 0.1, 0.2, 0.3], "eps points");
  const sweep = report.rows.filter((r) => r.defense === "DP_DDPM" && r.norm === "linf" && r.mode === "fresh")
    .sort((a, b) => a.eps! - b.eps!);
  assertEquals(
    markers.slice(0, 3).map((m) => Number(m["data-value"])),
    sweep.map((r) => r.vanilla.acc),
    "vanilla",
  );
  assertEquals(markers.slice(3).map((m) => Number(m["data-value"])), sweep.map((r) => r.addt.acc), "ADDT");
  assertEquals(elements(eps, "path", "band").length, 2, "two interval bands");

  // DW_Both (EOT-1) pairs with the fresh EOT-10 row of the same defense, norm, eps and steps
  const pairs = stochasticPairs(report.rows);
  assertEquals(pairs.length, 2, "pairs");
  for (const p of pairs) {
    assert(p.fresh !== null && p.fresh.defense === p.dwBoth.defense, "paired within the defense");
    assertEquals([p.fresh.norm, p.fresh.eps, p.fresh.mode], ["linf", 0.3, "fresh"], "fresh partner");
  }
  assertEquals(elements(stochastic, "rect", "mark").length, 8, "stochastic bars: 2 pairs x 4");
  assertEquals(elements(loss, "circle", "marker").length, 50, "loss markers");
  assertEquals(elements(loss, "path", "line").length, 2, "loss and its moving average");
});

Deno.test("sweepKey and pairing: eps removed from the label only; same EOT preferred", () => {
  const report = fixtureReport();
  const linf = report.rows.filter((r) => r.defense === "DP_DDPM" && r.norm === "linf" && r.mode === "fresh");
  assertEquals(new Set(linf.map(sweepKey)).size, 1, "one key for the sweep");
  assertEquals(sweepKey(report.rows[0]), null, "clean has no sweep key");
  const dw = report.rows.find((r) => r.mode === "dw_both")!;
  const sameEot: ComparisonRow = { ...linf[0], label: linf[0].label.replace("EOT-10", "EOT-1") };
  assertEquals(stochasticPairs([linf[0], sameEot, dw])[0].fresh?.label, sameEot.label, "same EOT wins");
  assertEquals(stochasticPairs([dw])[0].fresh, null, "no partner");
  const plot = stochasticPlot({ ...report, rows: [dw] });
  assert(plot.svg !== null && plot.note !== null && plot.note.includes(dw.label), "unpaired DW_Both noted");
});

Deno.test("markdown and html: every row's numbers, intervals and deltas appear", () => {
  const report = fixtureReport();
  const md = mainReportMarkdown(report), html = renderMainReportHtml(report, []);
  for (const r of report.rows) {
    for (const text of [pointText(r.vanilla), pointText(r.addt), deltaText(r.vanilla, r.addt)]) {
      assert(md.includes(text), `markdown lacks ${text} (${r.defense} ${r.label})`);
      assert(html.includes(text), `html lacks ${text} (${r.defense} ${r.label})`);
    }
    assert(md.includes(`| ${r.defense} | ${r.label} |`), `markdown row ${r.label}`);
  }
  assert(pointText(point(60, 128)) === "46.9% [38.4, 55.5]", `pointText ${pointText(point(60, 128))}`);
  for (const g of report.images) assert(md.includes(`](${g.file})`), `markdown links ${g.file}`);
  assert(md.includes(report.commit) && html.includes(report.commit), "commit shown");
  for (const t of report.timings) assert(html.includes(t.stage) && md.includes(t.stage), `timing ${t.stage}`);
});

Deno.test("escaping: labels, notes and config with markup stay text in SVG, HTML and Markdown", () => {
  const report = fixtureReport();
  const evil = `PGD <script>alert("x")</script> & 'q' | pipe`;
  report.rows[1] = { ...report.rows[1], label: evil, defense: "DP_DDPM" };
  report.notes.push("<img src=x onerror=alert(1)>");
  report.title = "A <b>bold</b> title";
  report.config = { path: "</pre><script>bad()</script>" };
  const html = renderMainReportHtml(report, []);
  assert(!/<script/i.test(html), "no <script> in the html");
  assert(!html.includes("<img src=x"), "note markup escaped");
  assert(!html.includes("<b>bold"), "title escaped");
  assert(
    html.includes("PGD &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39; | pipe"),
    "escaped label",
  );
  for (const p of robustPlots(report)) assert(!p.svg!.includes("<script"), `svg ${p.id} escaped`);
  const md = mainReportMarkdown(report);
  assert(md.includes("&lt;script>") && md.includes("\\| pipe"), "markdown cell escaped");
  assert(!md.includes("<img src=x"), "markdown note escaped");
});

Deno.test("empty data: notes instead of plots, and no exception", () => {
  const empty: MainReport = {
    ...fixtureReport(),
    rows: [],
    lossCurve: [],
    images: [],
    timings: [],
    notes: [],
  };
  const plots = mainPlots(empty);
  assert(plots.every((p) => p.svg === null && p.note), "every plot replaced by a note");
  const html = renderMainReportHtml(empty, []);
  for (
    const id of ["note-plot-robust", "note-plot-eps", "note-plot-stochastic", "note-plot-loss", "note-images"]
  ) {
    assert(html.includes(`id="${id}"`), `html note ${id}`);
  }
  assert(!html.includes('class="mark'), "no marks without data");
  assert(mainReportMarkdown(empty).includes("No evaluation rows."), "markdown says no rows");

  // only the clean rows and one attack: no sweep, no DW_Both
  const few = { ...fixtureReport() };
  few.rows = few.rows.slice(0, 2);
  const e = epsPlot(few);
  assert(e.svg === null && e.note!.includes("fewer than 2"), "eps plot skipped with a note");
  assert(renderMainReportHtml(few, []).includes(e.note!), "the note is in the html");
  assert(stochasticPlot(few).svg === null, "stochastic plot skipped");

  const nan = { ...fixtureReport(), lossCurve: [{ step: 1, loss: NaN }, { step: 2, loss: Infinity }] };
  const l = lossPlot(nan);
  assert(l.svg === null && l.note!.includes("2 non-finite"), `loss note: ${l.note}`);
  const some = { ...fixtureReport() };
  some.lossCurve = [...some.lossCurve.slice(0, 20), { step: 999, loss: NaN }];
  const s = lossPlot(some);
  assert(s.svg !== null && s.note!.includes("1 non-finite"), "partial curve drawn with a note");
  // a curve over three decades switches to a log axis
  const decades = { ...fixtureReport(), lossCurve: [1, 2, 3, 4].map((i) => ({ step: i, loss: 10 ** -i })) };
  assert(lossPlot(decades).svg!.includes("loss (log scale)"), "log scale for a curve over decades");
});

Deno.test("writeMainReport: report.json round-trips, html embeds the grids, no temporary files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "addt-report-test-" });
  try {
    const report = await writeFixture(dir);
    // one grid that does not exist: a note, not a broken <img>
    report.images.push({ title: "Missing grid", file: "missing.png" });
    const paths = await writeMainReport(dir, report);
    const json = JSON.parse(await Deno.readTextFile(paths.json));
    assertEquals(json, report, "report.json");
    const html = await Deno.readTextFile(paths.html);
    assertEquals((html.match(/<img /g) ?? []).length, 4, "four embedded images");
    assertEquals((html.match(/src="data:image\/png;base64,/g) ?? []).length, 4, "data URIs");
    assert(html.includes("(missing.png) not shown: file not found"), "missing grid noted");
    // self-contained: nothing fetched from elsewhere
    assert(
      !/<(link|script)\b/i.test(html) && !/(src|href)="(?!data:)/i.test(html) && !/url\(/i.test(html),
      "external",
    );
    const md = await Deno.readTextFile(paths.md);
    assert(md.includes("![Clean](clean.png)"), "markdown image link");
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert(!names.some((n) => n.endsWith(".tmp")), `temporary files left: ${names}`);
    for (const n of ["report.json", "report.md", "report.html"]) assert(names.includes(n), `${n} written`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("durations: progress lines and cost estimates round to the last unit shown (never 2m60s)", async () => {
  const { shortDuration } = await import("../src/train/progress.ts");
  const { formatDuration } = await import("../src/main/cost.ts");
  const short = [[0.4, "0s"], [59.4, "59s"], [59.6, "1m00s"], [179.6, "3m00s"], [3599.7, "1h00m"], [
    7170,
    "2h00m",
  ], [NaN, "?"]] as const;
  for (const [s, want] of short) {
    if (shortDuration(s) !== want) throw new Error(`shortDuration(${s}) = ${shortDuration(s)}, want ${want}`);
  }
  const cost = [[59.6, "1 min"], [3599, "1h00m"], [5400, "1h30m"], [86399, "1d00h"], [
    90000,
    "1d01h",
  ]] as const;
  for (const [s, want] of cost) {
    if (formatDuration(s) !== want) {
      throw new Error(`formatDuration(${s}) = ${formatDuration(s)}, want ${want}`);
    }
  }
});
