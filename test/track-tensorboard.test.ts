// The TensorBoard event file, read back by a parser written here independently of the writer:
// a bit-by-bit CRC-32C (checked on the standard "123456789" vector), TFRecord framing with
// masked CRCs verified, and a generic protobuf decoder for Event / Summary / Summary.Value.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { crc32c, maskedCrc32c } from "../src/track/crc32c.js";
import { TensorBoardWriter } from "../src/track/tensorboard.js";

function bitwiseCrc32c(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
    crc >>>= 0;
  }
  return ~crc >>> 0;
}

function mask(crc: number): number {
  const rotated = ((crc >>> 15) | (crc << 17)) >>> 0;
  return (rotated + 0xa282ead8) % 2 ** 32;
}

type Field = { field: number; wire: number; value: bigint | Uint8Array };

// Generic protobuf wire-format decoder: every field with its wire type and raw value.
function decodeMessage(buf: Uint8Array): Field[] {
  const fields: Field[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[pos++];
      if (b === undefined) throw new Error("truncated varint");
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) fields.push({ field, wire, value: varint() });
    else if (wire === 1) {
      fields.push({ field, wire, value: buf.slice(pos, pos + 8) });
      pos += 8;
    } else if (wire === 2) {
      const len = Number(varint());
      fields.push({ field, wire, value: buf.slice(pos, pos + len) });
      pos += len;
    } else if (wire === 5) {
      fields.push({ field, wire, value: buf.slice(pos, pos + 4) });
      pos += 4;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  expect(pos).toBe(buf.length);
  return fields;
}

const f64 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getFloat64(0, true);
const f32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getFloat32(0, true);

interface ParsedEvent {
  wallTime?: number;
  step?: bigint;
  fileVersion?: string;
  scalars?: Record<string, number>;
}

function parseEvent(bytes: Uint8Array): ParsedEvent {
  const event: ParsedEvent = {};
  for (const f of decodeMessage(bytes)) {
    if (f.field === 1) {
      expect(f.wire).toBe(1);
      event.wallTime = f64(f.value as Uint8Array);
    } else if (f.field === 2) {
      expect(f.wire).toBe(0);
      event.step = f.value as bigint;
    } else if (f.field === 3) {
      expect(f.wire).toBe(2);
      event.fileVersion = new TextDecoder().decode(f.value as Uint8Array);
    } else if (f.field === 5) {
      event.scalars = {};
      for (const v of decodeMessage(f.value as Uint8Array)) {
        expect(v.field).toBe(1); // Summary.value
        let tag = "";
        let value = NaN;
        for (const g of decodeMessage(v.value as Uint8Array)) {
          if (g.field === 1) tag = new TextDecoder().decode(g.value as Uint8Array);
          else if (g.field === 2) {
            expect(g.wire).toBe(5);
            value = f32(g.value as Uint8Array);
          } else throw new Error(`unexpected Summary.Value field ${g.field}`);
        }
        event.scalars[tag] = value;
      }
    } else throw new Error(`unexpected Event field ${f.field}`);
  }
  return event;
}

// TFRecord reader: checks both masked CRCs of every record.
function readRecords(file: string): Uint8Array[] {
  const buf = new Uint8Array(readFileSync(file));
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const records: Uint8Array[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const length = Number(view.getBigUint64(pos, true));
    expect(view.getUint32(pos + 8, true), "length CRC").toBe(mask(bitwiseCrc32c(buf.slice(pos, pos + 8))));
    const data = buf.slice(pos + 12, pos + 12 + length);
    expect(view.getUint32(pos + 12 + length, true), "data CRC").toBe(mask(bitwiseCrc32c(data)));
    records.push(data);
    pos += 12 + length + 4;
  }
  expect(pos).toBe(buf.length);
  return records;
}

describe("TensorBoard event files", () => {
  it("CRC-32C matches the standard check value and the independent bitwise version", () => {
    const check = new TextEncoder().encode("123456789");
    expect(crc32c(check)).toBe(0xe3069283);
    expect(bitwiseCrc32c(check)).toBe(0xe3069283);
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff);
    expect(crc32c(bytes)).toBe(bitwiseCrc32c(bytes));
    expect(maskedCrc32c(bytes)).toBe(mask(bitwiseCrc32c(bytes)));
  });

  it("writes file_version first, then scalar events, all readable back", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-tb-"));
    try {
      let t = 1700000000.25;
      const w = TensorBoardWriter.open(path.join(dir, "logs/tensorboard"), { hostname: "testhost", now: () => t });
      expect(path.basename(w.file)).toBe("events.out.tfevents.1700000000.testhost");
      t += 1;
      w.addScalars({ "train/loss": 2.5, "train/learning_rate": 1e-4 }, 10);
      w.addScalar("eval/bleu", 31.25, 20, 1700000100.5);
      w.addScalar("train/loss", 1.125, 2 ** 40);
      w.close();
      expect(() => w.addScalar("x", 1, 1)).toThrow(/closed/);

      const events = readRecords(w.file).map(parseEvent);
      expect(events).toHaveLength(4);
      expect(events[0]).toEqual({ wallTime: 1700000000.25, step: 0n, fileVersion: "brain.Event:2" });
      expect(events[1]).toEqual({ wallTime: 1700000001.25, step: 10n, scalars: { "train/loss": 2.5, "train/learning_rate": Math.fround(1e-4) } });
      expect(events[2]).toEqual({ wallTime: 1700000100.5, step: 20n, scalars: { "eval/bleu": 31.25 } });
      expect(events[3]!.step).toBe(2n ** 40n);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a second writer in the same second gets its own file", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-tb-"));
    try {
      const a = TensorBoardWriter.open(dir, { hostname: "h", now: () => 5 });
      const b = TensorBoardWriter.open(dir, { hostname: "h", now: () => 5 });
      a.close();
      b.close();
      expect(readdirSync(dir).sort()).toEqual(["events.out.tfevents.0000000005.h", "events.out.tfevents.0000000005.h.1"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the reader catches a corrupted byte (the test's checks can fail)", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-tb-"));
    try {
      const w = TensorBoardWriter.open(dir, { hostname: "h" });
      w.addScalar("loss", 1, 1);
      w.close();
      const bytes = readFileSync(w.file);
      bytes[bytes.length - 6]! ^= 0x01;
      writeFileSync(w.file, bytes);
      expect(() => readRecords(w.file)).toThrow(/data CRC/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rejects a negative or fractional step", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-tb-"));
    try {
      const w = TensorBoardWriter.open(dir);
      expect(() => w.addScalar("loss", 1, -1)).toThrow(/non-negative integer step/);
      expect(() => w.addScalar("loss", 1, 1.5)).toThrow(/non-negative integer step/);
      w.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
