// An event-file reader written independently of src/track (shared by the TensorBoard tests): a
// bit-by-bit CRC-32C, TFRecord framing with both masked CRCs verified, and a generic protobuf
// decoder for Event / Summary / Summary.Value / SessionLog.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect } from "vitest";

export function bitwiseCrc32c(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
    crc >>>= 0;
  }
  return ~crc >>> 0;
}

export function mask(crc: number): number {
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

export interface ParsedEvent {
  wallTime?: number;
  step?: bigint;
  fileVersion?: string;
  scalars?: Record<string, number>;
  /** SessionLog.status (1: START). */
  sessionStatus?: number;
}

export function parseEvent(bytes: Uint8Array): ParsedEvent {
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
    } else if (f.field === 6) {
      for (const g of decodeMessage(f.value as Uint8Array)) {
        if (g.field !== 1 || g.wire !== 0) throw new Error(`unexpected SessionLog field ${g.field}`);
        event.sessionStatus = Number(g.value as bigint);
      }
    } else throw new Error(`unexpected Event field ${f.field}`);
  }
  return event;
}

// TFRecord reader: checks both masked CRCs of every record.
export function readRecords(file: string): Uint8Array[] {
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

/** Every event of every event file in `dir`, in file-name order (the order TensorBoard reads them). */
export function readEventDir(dir: string): ParsedEvent[][] {
  return readdirSync(dir).filter((f) => f.startsWith("events.out.tfevents.")).sort().map((f) => readRecords(path.join(dir, f)).map(parseEvent));
}
