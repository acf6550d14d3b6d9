// The progress line on a terminal: step, bar, loss, learning rate, tokens/s and ETA, redrawn in
// place (at most ten times a second). Log lines are printed above it.

export interface ProgressState {
  step: number;
  totalSteps: number;
  loss: number | null;
  learningRate: number;
  tokensPerSecond: number;
  /** Seconds left at the current pace, when known. */
  etaSeconds: number | null;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

export function formatProgress(p: ProgressState, width: number): string {
  const pct = p.totalSteps > 0 ? p.step / p.totalSteps : 0;
  const stats = [
    `loss ${p.loss === null ? "-" : p.loss.toFixed(4)}`,
    `lr ${p.learningRate.toExponential(2)}`,
    `${Math.round(p.tokensPerSecond).toLocaleString("en-US")} tok/s`,
    `ETA ${p.etaSeconds === null ? "--:--" : formatDuration(p.etaSeconds)}`,
  ].join(" | ");
  const head = `step ${p.step}/${p.totalSteps} `;
  const tail = ` ${String(Math.floor(pct * 100)).padStart(3)}% | ${stats}`;
  const barWidth = Math.max(10, Math.min(40, width - head.length - tail.length - 1));
  const filled = Math.round(pct * barWidth);
  return head + "█".repeat(filled) + "░".repeat(barWidth - filled) + tail;
}

export class ProgressBar {
  private last = 0;
  private shown = false;
  private line = "";

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(p: ProgressState): void {
    const now = Date.now();
    if (now - this.last < 100 && p.step !== p.totalSteps) return;
    this.last = now;
    this.line = formatProgress(p, this.stream.columns ?? 100);
    this.draw();
  }

  /** Prints a line above the bar. */
  print(text: string): void {
    this.clear();
    this.stream.write(text + "\n");
    if (this.line) this.draw();
  }

  /** Leaves the last state on screen and moves below it. */
  finish(): void {
    if (this.shown) this.stream.write("\n");
    this.shown = false;
    this.line = "";
  }

  private clear(): void {
    if (this.shown) this.stream.write("\r\x1b[2K");
    this.shown = false;
  }

  private draw(): void {
    this.stream.write("\r\x1b[2K" + this.line);
    this.shown = true;
  }
}
