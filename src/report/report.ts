// `runReport`: reads a run folder and writes its report.html (atomically), as `s2s-train report
// <run>` does and as the trainer does at the end of a run.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../io/atomic-write.js";
import { renderReport } from "./html.js";
import { readRunFolder } from "./run-folder.js";

export interface ReportOptions {
  /** The run folder (runs/<name>). */
  run: string;
  /** Where to write; <run>/report.html by default. */
  output?: string;
  /** Predictions shown beside their references; default 20. */
  predictionSample?: number;
  /** Why the run stopped early, shown at the top (the trainer passes a diverged loss's message). */
  stopped?: string;
}

export interface ReportResult {
  file: string;
  /** data-chart ids of the charts drawn, in page order. */
  charts: string[];
}

// The package's name and version, from the package.json above this file (src/ or dist/src/).
function generator(): string {
  for (let dir = import.meta.dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (!existsSync(file)) continue;
    try {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "s2s-train") return `s2s-train ${pkg.version ?? ""}`.trim();
    } catch {
      /* keep looking */
    }
  }
  return "s2s-train";
}

export function runReport(options: ReportOptions): ReportResult {
  const run = readRunFolder(options.run, { predictionSample: options.predictionSample });
  const html = renderReport(run, { generator: generator(), ...(options.stopped !== undefined ? { stopped: options.stopped } : {}) });
  const file = options.output ?? path.join(options.run, "report.html");
  writeFileAtomic(file, html);
  const charts = [...html.matchAll(/<figure class="chart" data-chart="([^"]*)"/g)].map((m) => m[1]!);
  return { file, charts };
}
