// The TensorBoard event file, read back by a parser written independently of the writer
// (tfevents-reader.ts): a bit-by-bit CRC-32C (checked on the standard "123456789" vector),
// TFRecord framing with masked CRCs verified, and a generic protobuf decoder for the Event.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { crc32c, maskedCrc32c } from "../src/track/crc32c.js";
import { TensorBoardWriter } from "../src/track/tensorboard.js";
import { bitwiseCrc32c, mask, parseEvent, readRecords } from "./tfevents-reader.js";

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

describe("TensorBoard restart marker", () => {
  it("writes a SessionLog START event at the step given", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-tb-"));
    try {
      const w = TensorBoardWriter.open(dir, { hostname: "h", now: () => 7 });
      w.addSessionStart(4);
      w.addScalar("train/loss", 0.5, 4);
      w.close();
      const events = readRecords(w.file).map(parseEvent);
      expect(events[1]).toEqual({ wallTime: 7, step: 4n, sessionStatus: 1 });
      expect(events[2]).toEqual({ wallTime: 7, step: 4n, scalars: { "train/loss": 0.5 } });
      expect(() => w.addSessionStart(1)).toThrow(/closed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
