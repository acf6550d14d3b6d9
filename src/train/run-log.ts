// What a person sees while a run goes: pino JSON lines in logs/run.jsonl (everything), readable
// lines on the console (stderr), and on a terminal a progress line redrawn in place. Library
// callers get the file only unless they ask for the console.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { pino, type Logger } from "pino";
import { ProgressBar, type ProgressState } from "./progress.js";

type Fields = Record<string, unknown>;

export interface ConsoleOptions {
  /** Where readable lines go (default process.stderr). */
  stream?: NodeJS.WriteStream;
  /** Draw the progress line (default: when the stream is a terminal). */
  progressBar?: boolean;
}

function formatValue(v: unknown): string {
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    // Four decimals without trailing zeros (em=13.5, loss=0.7909); tiny or huge values in e-notation.
    return Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5 ? String(Number(v.toFixed(4))) : v.toExponential(3);
  }
  return typeof v === "string" ? v : JSON.stringify(v);
}

export class RunLog {
  private readonly logger: Logger;
  private readonly destination: ReturnType<typeof pino.destination>;
  private readonly stream: NodeJS.WriteStream | undefined;
  private readonly bar: ProgressBar | undefined;

  constructor(file: string, console: boolean | ConsoleOptions) {
    mkdirSync(path.dirname(file), { recursive: true });
    // Synchronous: a line is on disk before the next step starts, even if the process dies.
    this.destination = pino.destination({ dest: file, sync: true, append: true });
    this.logger = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime }, this.destination);
    const options = console === true ? {} : console === false ? undefined : console;
    this.stream = options ? options.stream ?? process.stderr : undefined;
    const wantBar = options?.progressBar ?? Boolean(this.stream?.isTTY);
    this.bar = this.stream && wantBar ? new ProgressBar(this.stream) : undefined;
  }

  info(msg: string, fields: Fields = {}): void {
    this.logger.info(fields, msg);
    this.print(msg, fields);
  }

  warn(msg: string, fields: Fields = {}): void {
    this.logger.warn(fields, msg);
    this.print(`warning: ${msg}`, fields);
  }

  error(msg: string, fields: Fields = {}): void {
    this.logger.error(fields, msg);
    this.print(`error: ${msg}`, fields);
  }

  /** Goes to the file only (per-step detail). */
  debug(msg: string, fields: Fields = {}): void {
    this.logger.info(fields, msg);
  }

  progress(p: ProgressState): void {
    this.bar?.update(p);
  }

  /** A console line that the file has in structured form already. */
  print(msg: string, fields: Fields = {}): void {
    if (!this.stream) return;
    const extra = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(" ");
    const line = `s2s-train: ${msg}${extra ? "  " + extra : ""}`;
    if (this.bar) this.bar.print(line);
    else this.stream.write(line + "\n");
  }

  close(): void {
    this.bar?.finish();
    this.destination.flushSync();
    this.destination.end();
  }
}
