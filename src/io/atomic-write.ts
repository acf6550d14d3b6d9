// Writing a file so that readers see the old content or the new content, never half of it:
// write a temporary file beside the target, fsync it, rename it over the target.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  try {
    const fd = openSync(tmp, "w");
    try {
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Rows as JSON Lines, written atomically. */
export function writeJsonlAtomic(file: string, rows: Iterable<unknown>): number {
  const lines: string[] = [];
  for (const row of rows) lines.push(JSON.stringify(row));
  writeFileAtomic(file, lines.length ? lines.join("\n") + "\n" : "");
  return lines.length;
}
