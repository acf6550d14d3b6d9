// Static SVG charts for the HTML report: line charts (steps on x, gaps where a value is missing,
// optional log scale, a marked step such as the best checkpoint) and horizontal bar charts. They
// are strings with no script and no external reference, so the report renders offline.

export interface Series {
  name: string;
  /** [x, y]; a non-finite y leaves a gap. */
  points: readonly (readonly [number, number])[];
  color: string;
  dashed?: boolean;
}

export interface LineChartOptions {
  /** Identifies the chart in the page (data-chart) and in tests. */
  id: string;
  title: string;
  series: readonly Series[];
  xLabel?: string;
  logY?: boolean;
  /** A vertical marker, e.g. the best checkpoint's step. */
  marker?: { x: number; label: string };
}

export const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0d9488", "#db2777", "#ca8a04", "#4f46e5"];

const W = 560;
const H = 270;
const M = { left: 58, right: 18, top: 40, bottom: 42 };

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** Compact number text: 3 significant digits, exponent form for very small or large values. */
export function formatNumber(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "–" : v > 0 ? "∞" : "-∞";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e6) return v.toExponential(digits - 1).replace(/\.?0+e/, "e").replace("e+", "e");
  if (Number.isInteger(v) && a < 1e6) return String(v);
  return String(Number(v.toPrecision(digits)));
}

// Ticks at 1, 2 or 5 times a power of ten, about `count` of them across [lo, hi].
function niceTicks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

// Ticks at 1, 2 and 5 times powers of ten between 10^lo and 10^hi (only the powers if that is too many).
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** k;
      if (Math.log10(v) >= lo && Math.log10(v) <= hi) ticks.push(Number(v.toPrecision(6)));
    }
  }
  return ticks.length > 8 ? ticks.filter((t) => Number.isInteger(Math.log10(t))) : ticks;
}

function extent(values: number[]): [number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  return [lo, hi];
}

function placeholder(o: LineChartOptions, message: string): string {
  return (
    `<figure class="chart" data-chart="${escapeXml(o.id)}"><svg class="chart-svg" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeXml(o.title)}">` +
    `<text class="chart-title" x="${M.left}" y="24">${escapeXml(o.title)}</text>` +
    `<text class="chart-empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">${escapeXml(message)}</text></svg></figure>`
  );
}

/** A line chart as an SVG inside a <figure class="chart" data-chart=id>. */
export function lineChart(o: LineChartOptions): string {
  const series = o.series.map((s) => ({ ...s, points: s.points.filter(([x]) => Number.isFinite(x)) }));
  const logY = o.logY === true && series.every((s) => s.points.every(([, y]) => !Number.isFinite(y) || y > 0));
  const ty = (y: number) => (logY ? Math.log10(y) : y);
  const finite = series.flatMap((s) => s.points.filter(([, y]) => Number.isFinite(y)));
  if (finite.length === 0) return placeholder(o, "no data");

  const [x0, x1] = extent(finite.map(([x]) => x).concat(o.marker ? [o.marker.x] : []));
  const [y0, y1] = extent(finite.map(([, y]) => ty(y)));
  const yPad = (y1 - y0) * 0.06;
  const ylo = y0 - yPad;
  const yhi = y1 + yPad;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => M.top + (1 - (ty(y) - ylo) / (yhi - ylo)) * ph;
  const f = (v: number) => v.toFixed(1);

  const parts: string[] = [];
  parts.push(`<text class="chart-title" x="${M.left}" y="24">${escapeXml(o.title)}</text>`);

  // Grid and y ticks
  const yTicks = logY ? logTicks(ylo, yhi) : niceTicks(ylo, yhi);
  for (const t of yTicks) {
    const y = sy(t);
    if (y < M.top - 0.5 || y > M.top + ph + 0.5) continue;
    parts.push(`<line class="grid" x1="${M.left}" x2="${M.left + pw}" y1="${f(y)}" y2="${f(y)}"/>`);
    parts.push(`<text class="tick" x="${M.left - 8}" y="${f(y + 4)}" text-anchor="end">${escapeXml(formatNumber(t))}</text>`);
  }
  for (const t of niceTicks(x0, x1, 6)) {
    const x = sx(t);
    if (x < M.left - 0.5 || x > M.left + pw + 0.5) continue;
    parts.push(`<line class="grid grid-x" x1="${f(x)}" x2="${f(x)}" y1="${M.top}" y2="${M.top + ph}"/>`);
    parts.push(`<text class="tick" x="${f(x)}" y="${M.top + ph + 18}" text-anchor="middle">${escapeXml(formatNumber(t))}</text>`);
  }
  parts.push(`<rect class="frame" x="${M.left}" y="${M.top}" width="${pw}" height="${ph}"/>`);
  if (o.xLabel) parts.push(`<text class="axis-label" x="${M.left + pw / 2}" y="${H - 6}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);

  if (o.marker) {
    const x = f(sx(o.marker.x));
    parts.push(`<line class="marker" x1="${x}" x2="${x}" y1="${M.top}" y2="${M.top + ph}"/>`);
    parts.push(`<text class="marker-label" x="${x}" y="${M.top - 5}" text-anchor="middle">${escapeXml(o.marker.label)}</text>`);
  }

  // Series: a path broken where values are missing; dots when there are few points.
  for (const s of series) {
    let d = "";
    let pen = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${f(sx(x))} ${f(sy(y))}`;
      pen = true;
    }
    const style = `stroke="${s.color}"${s.dashed ? ' stroke-dasharray="6 4"' : ""}`;
    if (d) parts.push(`<path class="series" data-series="${escapeXml(s.name)}" d="${d}" ${style}/>`);
    const shown = s.points.filter(([, y]) => Number.isFinite(y));
    if (shown.length <= 40) {
      for (const [x, y] of shown) {
        parts.push(
          `<circle class="dot" cx="${f(sx(x))}" cy="${f(sy(y))}" r="3" fill="${s.color}"><title>${escapeXml(`${s.name} · step ${formatNumber(x)}: ${formatNumber(y, 5)}`)}</title></circle>`,
        );
      }
    }
  }

  // Legend, right-aligned on the title line.
  let lx = W - M.right;
  const legend: string[] = [];
  for (const s of [...series].reverse()) {
    const label = escapeXml(s.name);
    const width = 7 * s.name.length + 26;
    lx -= width;
    legend.push(
      `<line x1="${lx}" x2="${lx + 16}" y1="20" y2="20" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 3"' : ""}/>` +
        `<text class="legend" x="${lx + 21}" y="24">${label}</text>`,
    );
  }
  if (series.length > 1) parts.push(`<g class="legend-box">${legend.join("")}</g>`);

  return (
    `<figure class="chart" data-chart="${escapeXml(o.id)}"><svg class="chart-svg" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeXml(o.title)}">` +
    parts.join("") +
    `</svg></figure>`
  );
}

export interface Bar {
  label: string;
  value: number;
  color: string;
}

/** Horizontal bars with their values, e.g. kept and rejected examples by reason. */
export function barChart(id: string, title: string, bars: readonly Bar[]): string {
  const rowH = 30;
  // Room for the longest label (about 6.6 px a character at 12 px), within reason.
  const labelW = Math.min(300, Math.max(80, 24 + 6.6 * Math.max(...bars.map((b) => b.label.length))));
  const h = 44 + rowH * bars.length + 10;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const barW = W - labelW - 90;
  const rows = bars.map((b, i) => {
    const y = 44 + i * rowH;
    const w = Math.max(b.value > 0 ? 2 : 0, (b.value / max) * barW);
    return (
      `<text class="bar-label" x="${(labelW - 10).toFixed(1)}" y="${y + 19}" text-anchor="end">${escapeXml(b.label)}</text>` +
      `<rect class="bar" x="${labelW}" y="${y + 5}" width="${w.toFixed(1)}" height="${rowH - 10}" rx="3" fill="${b.color}"><title>${escapeXml(`${b.label}: ${b.value}`)}</title></rect>` +
      `<text class="bar-value" x="${(labelW + w + 8).toFixed(1)}" y="${y + 19}">${b.value}</text>`
    );
  });
  return (
    `<figure class="chart" data-chart="${escapeXml(id)}"><svg class="chart-svg" viewBox="0 0 ${W} ${h}" role="img" aria-label="${escapeXml(title)}">` +
    `<text class="chart-title" x="16" y="24">${escapeXml(title)}</text>${rows.join("")}</svg></figure>`
  );
}
