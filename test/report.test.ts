// report.html from hand-made run folders (test/fixtures/runs): what it contains, that it needs
// nothing from the network, the errors for malformed logs, and the CLI command.
import { describe, expect, it, beforeEach, afterEach } from "vitest";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { runReport } from "../src/report/report.js";
import { readRunFolder } from "../src/report/run-folder.js";
import { formatNumber, lineChart } from "../src/report/svg-chart.js";

const FIXTURES = path.resolve(import.meta.dirname, "fixtures/runs");
const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");

let tmp: string;
beforeEach(() => (tmp = mkdtempSync(path.join(os.tmpdir(), "s2s-report-"))));
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

function copyRun(name: string): string {
  const dir = path.join(tmp, name);
  cpSync(path.join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

describe("report.html", () => {
  it("charts every logged series and shows metrics, best checkpoint, predictions and config", () => {
    const run = copyRun("tiny-run");
    const { file, charts } = runReport({ run });
    expect(file).toBe(path.join(run, "report.html"));
    expect(charts).toEqual(["loss", "learning_rate", "tokens_per_second", "grad_norm", "perplexity", "bleu", "rougeL", "em", "f1"]);
    const html = readFileSync(file, "utf8");
    // the loss chart has train (raw and smoothed: 60 points) and validation, and marks the best checkpoint
    const loss = html.slice(html.indexOf('data-chart="loss"'), html.indexOf('data-chart="learning_rate"'));
    expect([...loss.matchAll(/<path class="series" data-series="([^"]+)"/g)].map((m) => m[1])).toEqual(["train", "train (smoothed)", "validation"]);
    expect(loss).toContain('class="marker"');
    // the missing BLEU value at step 200 breaks the line into two pieces
    const bleu = html.slice(html.indexOf('data-chart="bleu"'), html.indexOf('data-chart="rougeL"'));
    expect(bleu.match(/<path class="series"[^>]* d="([^"]+)"/)![1]!.match(/M/g)).toHaveLength(2);
    expect(html).toContain("step 250"); // best checkpoint card
    expect(html).toContain("checkpoint-250");
    expect(html).toMatch(/<th>geography<\/th><td class="num">3<\/td>/); // per-category metrics
    expect(html).toContain("The first 5 of 5 from predictions.jsonl.");
    expect(html).toContain("&lt;b&gt;Escaping&lt;/b&gt; &amp; &quot;quotes&quot;"); // text, never markup
    expect(html).toContain("Wie heißt die Hauptstadt Japans? (東京?)");
    expect(html).toContain('<span class="empty">(empty)</span>');
    expect(html).toContain("metric_for_best_model: eval_loss"); // config as written
    expect(readdirSync(run).filter((f) => f.includes(".tmp-"))).toEqual([]); // atomic write left nothing behind
  });

  it("is self-contained: no script, no external stylesheet, font, image or link target", () => {
    const { file } = runReport({ run: copyRun("tiny-run") });
    const html = readFileSync(file, "utf8");
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(/i);
    expect(html).not.toMatch(/(src|href)\s*=/i);
    expect(html.match(/https?:\/\//g) ?? []).toEqual([]);
  });

  it("reports a synthetic-data job's kept and rejected counts by reason", () => {
    const run = copyRun("synth-job");
    const { charts, file } = runReport({ run, output: path.join(tmp, "synth.html") });
    expect(charts).toEqual(["synth"]);
    const html = readFileSync(file, "utf8");
    expect(html).toContain("synthetic-data job");
    expect([...html.matchAll(/<rect class="bar"[^>]*><title>([^<]+)<\/title>/g)].map((m) => m[1])).toEqual([
      "kept: 412",
      "rejected: judge_disagrees: 57",
      "rejected: answer_not_in_source: 31",
      "rejected: duplicate: 18",
      "rejected: too_short: 9",
    ]);
    expect(html).toContain("78.2% of 527");
  });

  it("names the file, line and column of a malformed log", () => {
    const run = copyRun("tiny-run");
    const train = path.join(run, "logs/train.csv");
    writeFileSync(train, "step,loss\n1,2.5\n2,abc\n");
    expect(() => readRunFolder(run)).toThrow(`${train}: line 3, column 'loss': expected a number, got 'abc'`);
    writeFileSync(train, "iteration,loss\n1,2.5\n");
    expect(() => readRunFolder(run)).toThrow(/train\.csv: expected a header line 'step,epoch,loss,learning_rate,grad_norm,tokens_per_second,elapsed_seconds', got 'iteration,loss' \(missing step\)/);
    writeFileSync(train, "step,loss\n1,2.5,7\n");
    expect(() => readRunFolder(run)).toThrow(/line 2: expected 2 cells as in the header, got 3/);
    writeFileSync(train, "step,loss\n1,nan\n2,inf\n3,\n");
    expect(readRunFolder(run).train!.rows.map((r) => r.loss)).toEqual([NaN, Infinity, NaN]);

    writeFileSync(path.join(run, "trainer_state.json"), '{"best_metric": "low"}');
    expect(() => readRunFolder(run)).toThrow(/trainer_state\.json: invalid:\n {2}best_metric: /);
    rmSync(path.join(run, "trainer_state.json"));
    writeFileSync(path.join(run, "predictions.jsonl"), '{"input": "a", "reference": "b", "prediction": "c"}\n{"input": "a"}\n');
    expect(() => readRunFolder(run)).toThrow(/predictions\.jsonl:2: invalid:\n {2}reference: /);
  });

  it("refuses a folder with nothing to report", () => {
    mkdirSync(path.join(tmp, "empty"));
    expect(() => runReport({ run: path.join(tmp, "empty") })).toThrow(/nothing to report: expected at least one of logs\/train\.csv/);
    expect(() => runReport({ run: path.join(tmp, "missing") })).toThrow(/run folder not found/);
  });

  it("falls back to the latest checkpoint's trainer_state.json", () => {
    const run = copyRun("tiny-run");
    const state = readFileSync(path.join(run, "trainer_state.json"), "utf8");
    rmSync(path.join(run, "trainer_state.json"));
    for (const step of [100, 250]) {
      mkdirSync(path.join(run, `checkpoints/checkpoint-${step}`), { recursive: true });
      writeFileSync(path.join(run, `checkpoints/checkpoint-${step}/trainer_state.json`), state.replace('"global_step": 300', `"global_step": ${step}`));
    }
    expect(readRunFolder(run).trainerState).toMatchObject({ global_step: 250, file: path.join("checkpoints", "checkpoint-250", "trainer_state.json") });
  });
});

describe("SVG charts", () => {
  it("formats tick numbers compactly", () => {
    expect([0, 2e-4, 1.5e-4, 0.5, 1234, 2.71828, 3e6, NaN].map((v) => formatNumber(v))).toEqual(["0", "2e-4", "1.5e-4", "0.5", "1234", "2.72", "3e6", "–"]);
  });

  it("puts log-scale ticks at 1, 2 and 5 times powers of ten", () => {
    const svg = lineChart({ id: "p", title: "P", logY: true, series: [{ name: "p", points: [[1, 900], [2, 40], [3, 6]], color: "#000" }] });
    const ticks = [...svg.matchAll(/<text class="tick" x="[\d.]+" y="[\d.]+" text-anchor="end">([^<]+)</g)].map((m) => m[1]);
    expect(ticks).toEqual(["5", "10", "20", "50", "100", "200", "500", "1000"]);
  });

  it("draws a placeholder when no value is finite and a dot for a single point", () => {
    expect(lineChart({ id: "x", title: "X", series: [{ name: "a", points: [[1, NaN]], color: "#000" }] })).toContain("no data");
    const one = lineChart({ id: "x", title: "X", series: [{ name: "a", points: [[5, 2]], color: "#000" }] });
    expect(one).toContain('<circle class="dot"');
    expect(one).not.toMatch(/NaN|Infinity/);
  });
});

describe("s2s-train report", () => {
  it("writes the report and says where", () => {
    const run = copyRun("tiny-run");
    const r = spawnSync(process.execPath, [cli, "report", run], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`wrote ${path.join(run, "report.html")} (9 charts)\n`);
  });

  it("fails with the reason and exit code 1", () => {
    const r = spawnSync(process.execPath, [cli, "report", path.join(tmp, "missing")], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^s2s-train: .*missing: run folder not found/);
  });
});
