// The report rendered by a real browser (headless Chromium, Debian's `chromium`; .ci/run installs
// it): the DOM after layout says where each chart is and how long its lines are, and a screenshot
// of the page shows colored ink inside every chart's box — charts present and not empty.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { runReport } from "../src/report/report.js";
import { decodePng, type Image } from "./png-decode.js";

function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM, "chromium", "chromium-browser", "google-chrome"].filter((c): c is string => !!c);
  return candidates.find((c) => spawnSync(c, ["--version"], { encoding: "utf8" }).status === 0);
}

function chromium(binary: string, profile: string, args: string[]): string {
  const r = spawnSync(
    binary,
    ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--force-device-scale-factor=1", `--user-data-dir=${profile}`, ...args],
    { encoding: "utf8", timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
  );
  if (r.status !== 0) throw new Error(`chromium ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}

interface ChartBox {
  id: string;
  x: number;
  y: number;
  w: number;
  h: number;
  lines: number[];
  bars: number[];
}

// Run inside the page (a test copy only; the report itself has no script).
const PROBE = `<script>
addEventListener("load", () => {
  const charts = [...document.querySelectorAll("figure.chart")].map((f) => {
    const r = f.querySelector("svg").getBoundingClientRect();
    return { id: f.dataset.chart, x: r.x + scrollX, y: r.y + scrollY, w: r.width, h: r.height,
      lines: [...f.querySelectorAll("path.series")].map((p) => p.getTotalLength()),
      bars: [...f.querySelectorAll("rect.bar")].map((b) => b.getBBox().width) };
  });
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({ charts, height: document.documentElement.scrollHeight });
  document.body.append(pre);
});
</script>`;

// Pixels that are clearly colored (series lines, dots, bars), not white, gray or black.
function inkInside(img: Image, box: ChartBox): number {
  let ink = 0;
  for (let y = Math.ceil(box.y); y < Math.min(img.height, box.y + box.h); y++) {
    for (let x = Math.ceil(box.x); x < Math.min(img.width, box.x + box.w); x++) {
      const i = (y * img.width + x) * 4;
      const [r, g, b] = [img.pixels[i]!, img.pixels[i + 1]!, img.pixels[i + 2]!];
      if (Math.max(r, g, b) - Math.min(r, g, b) > 80) ink++;
    }
  }
  return ink;
}

const chromiumBinary = findChromium();

describe("report.html in headless Chromium", () => {
  it("is installed (apt-get install chromium; .ci/run does this)", () => {
    expect(chromiumBinary, "no chromium on PATH (set CHROMIUM=/path/to/chromium)").toBeDefined();
  });

  it.runIf(chromiumBinary)("renders every chart with visible lines or bars", () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "s2s-chromium-"));
    try {
      const run = path.join(tmp, "tiny-run");
      cpSync(path.resolve(import.meta.dirname, "fixtures/runs/tiny-run"), run, { recursive: true });
      // The synth counts too, so the bar chart is rendered in the same page.
      cpSync(path.resolve(import.meta.dirname, "fixtures/runs/synth-job/synth"), path.join(run, "synth"), { recursive: true });
      const { file, charts } = runReport({ run });
      expect(charts).toHaveLength(10);

      const html = readFileSync(file, "utf8");
      const probeFile = path.join(tmp, "probe.html");
      writeFileSync(probeFile, html.replace("</body>", `${PROBE}</body>`));
      const dom = chromium(chromiumBinary!, path.join(tmp, "profile"), ["--window-size=1280,1000", "--virtual-time-budget=5000", "--dump-dom", `file://${probeFile}`]);
      const json = /<pre id="probe">([^<]*)<\/pre>/.exec(dom)?.[1];
      expect(json, "the probe did not run").toBeDefined();
      const layout = JSON.parse(json!.replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&")) as { charts: ChartBox[]; height: number };
      expect(layout.charts.map((c) => c.id)).toEqual(charts);
      for (const c of layout.charts) {
        expect(c.w, `${c.id} width`).toBeGreaterThan(300);
        expect(c.h, `${c.id} height`).toBeGreaterThan(100);
        if (c.id === "synth") expect(c.bars.every((w) => w > 0), "bars have width").toBe(true);
        else expect(c.lines.length > 0 && c.lines.every((len) => len > 50), `${c.id} lines ${c.lines}`).toBe(true);
      }

      const png = path.join(tmp, "report.png");
      const height = Math.ceil(layout.height);
      chromium(chromiumBinary!, path.join(tmp, "profile"), [`--window-size=1280,${height}`, `--screenshot=${png}`, `file://${file}`]);
      const img = decodePng(new Uint8Array(readFileSync(png)));
      expect(img.width).toBe(1280);
      // Lines drawn give 750–5600 colored pixels per chart here; dots and legend alone stay under 300.
      for (const c of layout.charts) {
        expect(inkInside(img, c), `colored pixels in chart ${c.id}`).toBeGreaterThan(c.id === "synth" ? 2000 : 500);
      }
      // and the page around the charts is mostly background, so the count above means something
      expect(inkInside(img, { id: "band", x: 0, y: height - 40, w: 1280, h: 40, lines: [], bars: [] })).toBe(0);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
