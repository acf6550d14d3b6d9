// The report page: one self-contained HTML document (inline CSS and SVG, no script, no network)
// built from what readRunFolder found — summary cards, charts of every logged series over steps,
// final metrics (per category when there are categories), a sample of predictions beside their
// references, synthetic-data kept/rejected counts, and the config as used.
import { formatNumber, escapeXml as esc, lineChart, barChart, PALETTE, type Series } from "./svg-chart.js";
import { TRAIN_COLUMNS, VALID_COLUMNS, type CsvLog, type RunFolder } from "./run-folder.js";

export interface RenderOptions {
  /** Shown in the footer; an ISO date by default. */
  generatedAt?: string;
  /** "s2s-train 0.1.0" */
  generator?: string;
  /** Why the run stopped early (a diverged loss), shown above everything else. */
  stopped?: string;
}

const COLORS = { train: PALETTE[0]!, trainRaw: "#a5c3f7", valid: PALETTE[1]! };

function column(log: CsvLog | undefined, name: string): [number, number][] {
  if (!log || !log.columns.includes(name)) return [];
  return log.rows.map((r) => [r.step!, r[name]!] as [number, number]);
}

const hasValues = (points: [number, number][]) => points.some(([, y]) => Number.isFinite(y));

// TensorBoard-style exponential moving average, for a readable line through noisy losses.
function smooth(points: [number, number][], weight: number): [number, number][] {
  let last = NaN;
  return points.map(([x, y]) => {
    if (!Number.isFinite(y)) return [x, y];
    last = Number.isFinite(last) ? last * weight + (1 - weight) * y : y;
    return [x, last];
  });
}

function lastFinite(points: [number, number][]): [number, number] | undefined {
  for (let i = points.length - 1; i >= 0; i--) if (Number.isFinite(points[i]![1])) return points[i];
  return undefined;
}

function minFinite(points: [number, number][]): [number, number] | undefined {
  let best: [number, number] | undefined;
  for (const p of points) if (Number.isFinite(p[1]) && (!best || p[1] < best[1])) best = p;
  return best;
}

function median(values: number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s % 60} s` : `${s} s`;
}

const METRIC_TITLES: Record<string, string> = {
  bleu: "BLEU", chrf: "chrF", rouge1: "ROUGE-1", rouge2: "ROUGE-2", rougeL: "ROUGE-L", rougeLsum: "ROUGE-Lsum",
  em: "Exact match", f1: "F1", soft_em: "Soft exact match",
};
const metricTitle = (name: string) => METRIC_TITLES[name] ?? name;

function card(label: string, value: string, detail = ""): string {
  return `<div class="card"><div class="card-label">${esc(label)}</div><div class="card-value">${esc(value)}</div>${detail ? `<div class="card-detail">${esc(detail)}</div>` : ""}</div>`;
}

function bestCheckpointStep(run: RunFolder): number | undefined {
  const m = /checkpoint-(\d+)/.exec(run.trainerState?.best_model_checkpoint ?? "");
  return m ? Number(m[1]) : undefined;
}

function summaryCards(run: RunFolder): string {
  const cards: string[] = [];
  const loss = column(run.train, "loss");
  const evalLoss = column(run.valid, "eval_loss");
  const lastStep = run.trainerState?.global_step ?? run.train?.rows.at(-1)?.step ?? run.valid?.rows.at(-1)?.step;
  if (lastStep !== undefined) {
    const epoch = run.train?.rows.at(-1)?.epoch ?? run.trainerState?.epoch ?? NaN;
    cards.push(card("Steps", formatNumber(lastStep), Number.isFinite(epoch) ? `epoch ${formatNumber(epoch!)}` : ""));
  }
  const lastLoss = lastFinite(loss);
  if (lastLoss) cards.push(card("Train loss", formatNumber(lastLoss[1], 4), `at step ${formatNumber(lastLoss[0])} · first ${formatNumber(loss.find(([, y]) => Number.isFinite(y))![1], 4)}`));
  const bestEval = minFinite(evalLoss);
  if (bestEval) cards.push(card("Best eval loss", formatNumber(bestEval[1], 4), `at step ${formatNumber(bestEval[0])} · perplexity ${formatNumber(Math.exp(bestEval[1]), 4)}`));
  const state = run.trainerState;
  if (state?.best_model_checkpoint) {
    const name = state.best_model_checkpoint.split(/[/\\]/).pop()!;
    const step = bestCheckpointStep(run);
    const metric = state.best_metric != null ? ` · best metric ${formatNumber(state.best_metric, 5)}` : "";
    cards.push(card("Best checkpoint", step !== undefined ? `step ${formatNumber(step)}` : name, `${name}${metric}`));
  }
  const tps = median(column(run.train, "tokens_per_second").map(([, y]) => y));
  if (Number.isFinite(tps)) cards.push(card("Throughput", `${formatNumber(tps)} tok/s`, "median over logged steps"));
  const elapsed = lastFinite(column(run.train, "elapsed_seconds"));
  if (elapsed) cards.push(card("Training time", duration(elapsed[1])));
  if (run.synth) {
    const rejected = Object.values(run.synth.rejected).reduce((a, b) => a + b, 0);
    const total = run.synth.kept + rejected;
    cards.push(card("Synthetic examples kept", formatNumber(run.synth.kept), total > 0 ? `${formatNumber((100 * run.synth.kept) / total)}% of ${total}` : ""));
  }
  if (run.predictions) cards.push(card("Predictions", formatNumber(run.predictions.total), "in predictions.jsonl"));
  return cards.length ? `<section class="cards">${cards.join("")}</section>` : "";
}

function charts(run: RunFolder): string {
  const out: string[] = [];
  const marker = bestCheckpointStep(run);
  const markerOption = marker !== undefined ? { marker: { x: marker, label: "best" } } : {};
  const trainLoss = column(run.train, "loss");
  const evalLoss = column(run.valid, "eval_loss");
  if (hasValues(trainLoss) || hasValues(evalLoss)) {
    const series: Series[] = [];
    if (trainLoss.length > 50) {
      series.push({ name: "train", points: trainLoss, color: COLORS.trainRaw });
      series.push({ name: "train (smoothed)", points: smooth(trainLoss, 0.8), color: COLORS.train });
    } else if (hasValues(trainLoss)) {
      series.push({ name: "train", points: trainLoss, color: COLORS.train });
    }
    if (hasValues(evalLoss)) series.push({ name: "validation", points: evalLoss, color: COLORS.valid });
    out.push(lineChart({ id: "loss", title: "Loss", series, xLabel: "step", ...markerOption }));
  }
  const single = (id: string, title: string, points: [number, number][], color: string, logY = false) => {
    if (hasValues(points)) out.push(lineChart({ id, title, series: [{ name: title, points, color }], xLabel: "step", logY }));
  };
  single("learning_rate", "Learning rate", column(run.train, "learning_rate"), PALETTE[3]!);
  single("tokens_per_second", "Tokens per second", column(run.train, "tokens_per_second"), PALETTE[2]!);
  single("grad_norm", "Gradient norm", column(run.train, "grad_norm"), PALETTE[4]!);
  const ppl = column(run.valid, "perplexity");
  const pplValues = ppl.map(([, y]) => y).filter((y) => Number.isFinite(y) && y > 0);
  single("perplexity", "Validation perplexity", ppl, COLORS.valid, pplValues.length > 1 && Math.max(...pplValues) / Math.min(...pplValues) > 20);

  // Every other column: generation metrics in valid.csv, anything extra in train.csv.
  let colorIndex = 5;
  const extra = (log: CsvLog | undefined, known: string[], prefix: string) => {
    for (const name of log?.columns ?? []) {
      if (known.includes(name)) continue;
      const points = column(log, name);
      if (!hasValues(points)) continue;
      const color = PALETTE[colorIndex++ % PALETTE.length]!;
      out.push(lineChart({ id: `${prefix}${name}`, title: `${prefix ? "Train: " : ""}${metricTitle(name)}`, series: [{ name: metricTitle(name), points, color }], xLabel: "step", ...markerOption }));
    }
  };
  extra(run.valid, VALID_COLUMNS, "");
  extra(run.train, TRAIN_COLUMNS, "train_");

  if (run.synth) {
    const bars = [{ label: "kept", value: run.synth.kept, color: PALETTE[2]! }];
    for (const [reason, count] of Object.entries(run.synth.rejected).sort((a, b) => b[1] - a[1])) {
      bars.push({ label: `rejected: ${reason}`, value: count, color: "#dc2626" });
    }
    out.push(barChart("synth", "Synthetic examples: kept and rejected by reason", bars));
  }
  return out.length ? `<section><h2>Charts</h2><div class="charts">${out.join("")}</div></section>` : "";
}

function scoreCell(v: number | null | undefined): string {
  return `<td class="num">${v == null ? "–" : esc(formatNumber(v, 4))}</td>`;
}

function metricsTables(run: RunFolder): string {
  const parts: string[] = [];
  const m = run.metrics;
  if (m) {
    const names = Object.keys(m.scores);
    const head = `<tr><th></th><th class="num">examples</th>${names.map((n) => `<th class="num">${esc(metricTitle(n))}</th>`).join("")}</tr>`;
    const rows = [`<tr class="overall"><th>all</th>${scoreCell(m.count)}${names.map((n) => scoreCell(m.scores[n])).join("")}</tr>`];
    for (const [category, c] of Object.entries(m.byCategory ?? {})) {
      rows.push(`<tr><th>${esc(category)}</th>${scoreCell(c.count)}${names.map((n) => scoreCell(c.scores[n])).join("")}</tr>`);
    }
    parts.push(`<h3>Evaluation (metrics.json)</h3><div class="table-wrap fit"><table class="metrics">${head}${rows.join("")}</table></div>`);
  }
  const last = run.valid?.rows.at(-1);
  if (last && run.valid) {
    const names = run.valid.columns.filter((c) => c !== "step" && c !== "epoch");
    parts.push(
      `<h3>Last validation (step ${esc(formatNumber(last.step!))})</h3><div class="table-wrap fit"><table class="metrics"><tr>${names.map((n) => `<th class="num">${esc(metricTitle(n))}</th>`).join("")}</tr>` +
        `<tr>${names.map((n) => scoreCell(last[n])).join("")}</tr></table></div>`,
    );
  }
  const state = run.trainerState;
  if (state) {
    const items = [
      ["best checkpoint", state.best_model_checkpoint ?? "–"],
      ["best metric", state.best_metric != null ? formatNumber(state.best_metric, 6) : "–"],
      ["global step", state.global_step != null ? String(state.global_step) : "–"],
      ["from", state.file],
    ];
    parts.push(`<h3>Trainer state</h3><dl class="kv">${items.map(([k, v]) => `<dt>${esc(k!)}</dt><dd>${esc(v!)}</dd>`).join("")}</dl>`);
  }
  return parts.length ? `<section><h2>Metrics</h2>${parts.join("")}</section>` : "";
}

function predictionsTable(run: RunFolder): string {
  const p = run.predictions;
  if (!p || p.sample.length === 0) return "";
  const rows = p.sample.map((r, i) => {
    const refs = Array.isArray(r.reference) ? r.reference : [r.reference];
    const scores = Object.entries(r.scores)
      .map(([k, v]) => `<span class="chip"><b>${esc(metricTitle(k))}</b> ${v == null ? "–" : esc(formatNumber(v, 3))}</span>`)
      .join("");
    return (
      `<tr><td class="num">${i + 1}</td><td><div class="text">${esc(r.input)}</div>${r.category ? `<span class="chip category">${esc(r.category)}</span>` : ""}</td>` +
      `<td>${refs.map((ref) => `<div class="text">${esc(ref)}</div>`).join("")}</td>` +
      `<td><div class="text prediction">${r.prediction === "" ? '<span class="empty">(empty)</span>' : esc(r.prediction)}</div></td><td class="scores">${scores}</td></tr>`
    );
  });
  return (
    `<section><h2>Predictions</h2><p class="note">The first ${p.sample.length} of ${p.total} from predictions.jsonl.</p>` +
    `<div class="table-wrap"><table class="predictions"><tr><th class="num">#</th><th>Input</th><th>Reference</th><th>Prediction</th><th>Scores</th></tr>${rows.join("")}</table></div></section>`
  );
}

function synthTable(run: RunFolder): string {
  if (!run.synth) return "";
  const rejected = Object.entries(run.synth.rejected).sort((a, b) => b[1] - a[1]);
  const total = run.synth.kept + rejected.reduce((a, [, n]) => a + n, 0);
  const pct = (n: number) => (total > 0 ? `${formatNumber((100 * n) / total)}%` : "–");
  const rows = [`<tr class="overall"><th>kept</th><td class="num">${run.synth.kept}</td><td class="num">${pct(run.synth.kept)}</td></tr>`]
    .concat(rejected.map(([reason, n]) => `<tr><th>rejected: ${esc(reason)}</th><td class="num">${n}</td><td class="num">${pct(n)}</td></tr>`));
  return `<section><h2>Synthetic data</h2><div class="table-wrap fit"><table class="metrics"><tr><th></th><th class="num">examples</th><th class="num">share</th></tr>${rows.join("")}</table></div></section>`;
}

const CSS = `
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif}
header{background:linear-gradient(120deg,#1e3a8a,#2563eb);color:#fff;padding:26px 40px 62px}
header h1{margin:0 auto;max-width:1160px;font-size:24px;font-weight:650;letter-spacing:.2px}
header .sub{opacity:.85;margin:4px auto 0;max-width:1160px;font-size:13px}
main{max-width:1240px;margin:0 auto;padding:24px 40px 40px}
h2{font-size:17px;margin:30px 0 12px;font-weight:650}
h3{font-size:14px;margin:18px 0 8px;color:#374151}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px;margin-top:-44px}
.card{background:var(--card);border-radius:10px;padding:12px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08),0 4px 12px rgba(0,0,0,.04)}
.card-label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.5px}
.card-value{font-size:22px;font-weight:650;margin-top:2px;overflow-wrap:anywhere}
.card-detail{color:var(--muted);font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
.chart{margin:0;background:var(--card);border-radius:10px;padding:6px 6px 2px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.chart-svg{width:100%;height:auto;display:block}
.chart-title{font-size:14px;font-weight:650;fill:var(--fg)}
.chart-empty{fill:var(--muted);font-size:13px}
.grid{stroke:#eef0f3;stroke-width:1}
.frame{fill:none;stroke:#d1d5db;stroke-width:1}
.tick{fill:var(--muted);font-size:11px}
.axis-label{fill:var(--muted);font-size:11px}
.legend{fill:#374151;font-size:11.5px}
.series{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
.dot{stroke:#fff;stroke-width:1}
.marker{stroke:#9ca3af;stroke-width:1.2;stroke-dasharray:4 3}
.marker-label{fill:#6b7280;font-size:10.5px}
.bar-label{fill:#374151;font-size:12px}
.bar-value{fill:#374151;font-size:12px;font-weight:600}
.table-wrap{overflow-x:auto;background:var(--card);border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.table-wrap.fit{display:inline-block;max-width:100%;vertical-align:top}
table{border-collapse:collapse;width:100%}
th,td{padding:8px 12px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
tr:last-child th,tr:last-child td{border-bottom:none}
th{font-weight:600;color:#374151;background:#fafafa}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.overall th,tr.overall td{font-weight:650}
table.metrics{width:auto}
.predictions td{max-width:360px}
.text{white-space:pre-wrap;word-break:break-word;max-height:9em;overflow:auto}
.text+.text{border-top:1px dashed var(--line);margin-top:4px;padding-top:4px}
.prediction{color:#1e3a8a}
.empty{color:var(--muted);font-style:italic}
.chip{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:999px;padding:1px 8px;margin:0 4px 4px 0;font-size:12px;white-space:nowrap}
.chip.category{background:#ecfdf5;color:#065f46;margin-top:6px}
.scores{min-width:150px}
.note{color:var(--muted);margin:-4px 0 10px}
.stopped{border-left:4px solid #c0392b;background:#fdecea;padding:8px 14px;border-radius:4px}
.stopped h2{color:#c0392b;margin:4px 0}
.kv{display:inline-grid;min-width:50%;grid-template-columns:max-content 1fr;gap:4px 16px;background:var(--card);border-radius:10px;padding:12px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin:0}
.kv dt{color:var(--muted)}.kv dd{margin:0;font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:13px;word-break:break-all}
pre.config{background:#0f172a;color:#e2e8f0;border-radius:10px;padding:16px 18px;overflow:auto;font:12.5px/1.55 ui-monospace,"DejaVu Sans Mono",monospace;margin:0}
footer{color:var(--muted);font-size:12px;text-align:center;padding:20px}
`;

/** The report as one HTML document. */
export function renderReport(run: RunFolder, options: RenderOptions = {}): string {
  const generatedAt = options.generatedAt ?? new Date().toISOString();
  const kind = run.synth && !run.train ? "synthetic-data job" : "training run";
  const sub = [kind, run.dir].join(" · ");
  const config = run.configText !== undefined ? `<section><h2>Config</h2><pre class="config">${esc(run.configText)}</pre></section>` : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(run.name)} · s2s-train report</title><style>${CSS}</style></head>
<body><header><h1>${esc(run.name)}</h1><div class="sub">${esc(sub)}</div></header>
<main>${options.stopped !== undefined ? `<section class="stopped" role="alert"><h2>The run stopped</h2><p>${esc(options.stopped)}</p></section>` : ""}${summaryCards(run)}${charts(run)}${metricsTables(run)}${synthTable(run)}${predictionsTable(run)}${config}</main>
<footer>${esc(options.generator ?? "s2s-train")} · generated ${esc(generatedAt)}</footer></body></html>
`;
}
