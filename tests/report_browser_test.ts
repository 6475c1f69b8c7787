/**
 * report.html in a real browser: Debian's headless Chromium through playwright-core. Every plot's <svg> must
 * have a size and data marks, every grid <img> must have decoded, the console must stay clean and the page
 * must request nothing beyond itself (self-contained). A full-page screenshot is saved beside the report
 * (and to $ADDT_SCREENSHOT when set) so a person can look at it.
 */
import { chromium } from "playwright-core";
import { mainPlots, writeMainReport } from "../src/report/mod.ts";
import { assert, assertEquals, FIXTURE_IMAGES, writeFixture } from "./report_fixture.ts";

const CHROMIUM = "/usr/bin/chromium";

async function requireChromium(): Promise<void> {
  try {
    const info = await Deno.stat(CHROMIUM);
    if (info.isFile) return;
  } catch { /* reported below */ }
  throw new Error(
    `${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) to run the report's ` +
      "browser test (.ci/run does this)",
  );
}

Deno.test({
  name: "report.html: every plot and image renders in headless Chromium, no console errors, screenshot",
  fn: async () => {
    await requireChromium();
    const dir = await Deno.makeTempDir({ prefix: "addt-report-" });
    const report = await writeFixture(dir);
    const paths = await writeMainReport(dir, report);
    const pageUrl = `file://${encodeURI(paths.html)}`;
    const expectedPlots = mainPlots(report).filter((p) => p.svg !== null).map((p) => p.id).sort();
    assertEquals(expectedPlots.length, 5, "fixture: 2 robust plots (one per defense), eps, stochastic, loss");

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [], requests: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
      page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
      page.on("request", (r) => {
        if (r.url() !== pageUrl && !r.url().startsWith("data:")) requests.push(r.url());
      });
      await page.goto(pageUrl, { waitUntil: "load" });

      const plots = await page.$$eval("svg.plot", (els) =>
        els.map((e) => {
          const box = e.getBoundingClientRect();
          // a mark counts as drawn when its own box is not empty (a bar of 0% still has a width)
          const drawn = [...e.querySelectorAll(".mark")].filter((m) => {
            const b = m.getBoundingClientRect();
            return b.width > 0 || b.height > 0;
          });
          return { id: e.id, width: box.width, height: box.height, marks: drawn.length };
        }));
      assertEquals(plots.map((p) => p.id).sort(), expectedPlots, "plot ids in the page");
      for (const p of plots) {
        assert(p.width > 100 && p.height > 100, `plot ${p.id} has size ${p.width}x${p.height}`);
        assert(p.marks >= 1, `plot ${p.id} has no drawn data mark`);
      }

      const images = await page.$$eval("img", (els) =>
        els.map((e) => {
          // no DOM types in Deno's lib: the fields read, structurally
          const img = e as unknown as { id: string; complete: boolean; naturalWidth: number; width: number };
          return { id: img.id, complete: img.complete, naturalWidth: img.naturalWidth, width: img.width };
        }));
      assertEquals(images.length, FIXTURE_IMAGES.length, "one <img> per grid");
      for (const img of images) {
        assert(img.id.startsWith("img-"), `image id ${img.id}`);
        assert(img.complete && img.naturalWidth > 0 && img.width > 0, `image ${img.id} did not decode`);
      }

      assertEquals(errors, [], "console errors");
      assertEquals(requests, [], "the page must not load anything beyond itself");

      const shot = `${dir}/report-screenshot.png`;
      const png = await page.screenshot({ fullPage: true, path: shot });
      assert(png.length > 10_000, `screenshot of ${png.length} bytes`);
      const extra = Deno.env.get("ADDT_SCREENSHOT");
      if (extra) await Deno.writeFile(extra, png);
      console.log(`report: ${paths.html}\nscreenshot: ${shot}${extra ? ` and ${extra}` : ""}`);
    } finally {
      await browser.close();
    }
  },
});
