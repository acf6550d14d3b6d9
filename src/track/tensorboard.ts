// A TensorBoard event-file writer: the file TensorFlow's summary writers produce, so that
// `tensorboard --logdir runs/<name>/logs/tensorboard` shows a run's curves. The file is a sequence
// of TFRecords — uint64 length, masked CRC-32C of the length, the bytes, masked CRC-32C of the
// bytes — each holding one `Event` protocol buffer (tensorflow/core/util/event.proto):
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
//   Event.session_log = 6: SessionLog { SessionStatus status = 1; }, START = 1
// The first record carries file_version "brain.Event:2". Records are appended as they come, like
// TensorFlow's writer: a crash can leave at most a truncated last record, which TensorBoard skips.
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { maskedCrc32c } from "./crc32c.js";
import { ProtoWriter } from "./protobuf-writer.js";

export const EVENT_FILE_VERSION = "brain.Event:2";
/** SessionLog.SessionStatus.START. */
const SESSION_START = 1;

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const header = new Uint8Array(12);
  const view = new DataView(header.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(header.subarray(0, 8)), true);
  const footer = new Uint8Array(4);
  new DataView(footer.buffer).setUint32(0, maskedCrc32c(data), true);
  return Buffer.concat([header, data, footer]);
}

/** An Event with scalar summaries (one Summary.Value per tag). */
export function scalarEvent(values: Record<string, number>, step: number, wallTime: number): Uint8Array {
  const summary = new ProtoWriter();
  for (const [tag, value] of Object.entries(values)) {
    summary.message(1, new ProtoWriter().string(1, tag).float(2, value));
  }
  return new ProtoWriter().double(1, wallTime).int64(2, step).message(5, summary).finish();
}

export interface TensorBoardWriterOptions {
  /** Defaults to os.hostname(), as in TensorFlow's file names. */
  hostname?: string;
  /** Seconds since the epoch; defaults to now. */
  now?: () => number;
}

export class TensorBoardWriter {
  /** The event file being written. */
  readonly file: string;
  private fd: number | null;
  private readonly now: () => number;

  private constructor(file: string, fd: number, now: () => number) {
    this.file = file;
    this.fd = fd;
    this.now = now;
  }

  /**
   * Creates `logDir` if needed and a new `events.out.tfevents.<seconds>.<host>` file in it
   * (".1", ".2"… appended if a writer in the same second already took the name).
   */
  static open(logDir: string, options: TensorBoardWriterOptions = {}): TensorBoardWriter {
    const now = options.now ?? (() => Date.now() / 1000);
    const host = (options.hostname ?? os.hostname()).replace(/[/\\]/g, "_");
    mkdirSync(logDir, { recursive: true });
    const base = path.join(logDir, `events.out.tfevents.${String(Math.floor(now())).padStart(10, "0")}.${host}`);
    for (let attempt = 0; ; attempt++) {
      const file = attempt === 0 ? base : `${base}.${attempt}`;
      let fd: number;
      try {
        fd = openSync(file, "wx");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST" && attempt < 100) continue;
        throw new Error(`cannot create the TensorBoard event file ${file}: ${(e as Error).message}`);
      }
      const writer = new TensorBoardWriter(file, fd, now);
      writer.append(new ProtoWriter().double(1, now()).int64(2, 0).string(3, EVENT_FILE_VERSION).finish());
      return writer;
    }
  }

  private append(event: Uint8Array): void {
    if (this.fd === null) throw new Error(`the TensorBoard event file ${this.file} is closed`);
    writeSync(this.fd, tfRecord(event));
  }

  /** Appends one event holding every scalar of `values` (tags like "train/loss") at `step`. */
  addScalars(values: Record<string, number>, step: number, wallTime = this.now()): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`[tensorboard] expected a non-negative integer step, got ${step}`);
    if (Object.keys(values).length === 0) return;
    this.append(scalarEvent(values, step, wallTime));
  }

  addScalar(tag: string, value: number, step: number, wallTime = this.now()): void {
    this.addScalars({ [tag]: value }, step, wallTime);
  }

  /**
   * A SessionLog START event at `step`: TensorBoard drops the events older files of the run
   * logged at `step` or later (a resumed run logs those steps again), as TensorFlow's
   * supervisor does on a restart.
   */
  addSessionStart(step: number, wallTime = this.now()): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`[tensorboard] expected a non-negative integer step, got ${step}`);
    this.append(new ProtoWriter().double(1, wallTime).int64(2, step).message(6, new ProtoWriter().int64(1, SESSION_START)).finish());
  }

  /** Makes what was written durable (fsync). */
  flush(): void {
    if (this.fd !== null) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
  }
}
