// Progress of a job on stderr: a redrawn bar on a terminal, a plain line every few seconds when
// the output is a file or a pipe (logs stay readable).
export interface ProgressCounts {
  done: number;
  total: number;
  kept: number;
  rejected: number;
  failed: number;
}

export interface ProgressReporter {
  update(counts: ProgressCounts): void;
  finish(counts: ProgressCounts): void;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

export function progressLine(label: string, c: ProgressCounts, elapsedS: number, startDone: number, width = 24): string {
  const fraction = c.total ? c.done / c.total : 1;
  const filled = Math.round(fraction * width);
  const bar = "#".repeat(filled) + ".".repeat(width - filled);
  const rate = (c.done - startDone) / Math.max(elapsedS, 1e-9);
  const eta = rate > 0 ? (c.total - c.done) / rate : Number.POSITIVE_INFINITY;
  return `${label} [${bar}] ${c.done}/${c.total} kept ${c.kept} rejected ${c.rejected} failed ${c.failed}` +
    ` | ${(rate * 60).toFixed(1)}/min | ETA ${c.done >= c.total ? "0s" : formatDuration(eta)}`;
}

export function consoleProgress(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  const start = Date.now();
  let startDone: number | undefined;
  let lastPlain = 0;
  const tty = stream.isTTY === true;
  const line = (c: ProgressCounts) => {
    startDone ??= c.done;
    return progressLine(label, c, (Date.now() - start) / 1000, startDone);
  };
  return {
    update(c) {
      if (tty) {
        stream.write(`\r${line(c)}\x1b[K`);
      } else if (Date.now() - lastPlain > 5000) {
        lastPlain = Date.now();
        stream.write(`${line(c)}\n`);
      }
    },
    finish(c) {
      stream.write(`${tty ? "\r" : ""}${line(c)}${tty ? "\x1b[K" : ""}\n`);
    },
  };
}

export const silentProgress: ProgressReporter = { update() {}, finish() {} };
