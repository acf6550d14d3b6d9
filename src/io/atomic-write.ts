// Whole-file and whole-folder writes that readers never see half done (the TypeScript side of
// native/include/s2s/io/atomic_file.h): write a temporary sibling, fsync, rename, fsync the folder.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";

/** A temporary name next to `target`, unique to this process. */
export function temporarySibling(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
}

/** fsync a folder so a rename inside it survives a crash (ignored where folders cannot be synced). */
export function syncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some file systems (and Windows) cannot open or sync a folder; the rename still happened.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes `data` to `file` atomically: the old contents or the new, never a mix. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const temp = temporarySibling(file);
  const fd = openSync(temp, "wx");
  try {
    try {
      const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (e) {
    rmSync(temp, { force: true });
    throw e;
  }
  syncFolder(path.dirname(file));
}

/** Rows as JSON Lines, written atomically; returns the row count. */
export function writeJsonlAtomic(file: string, rows: Iterable<unknown>): number {
  const lines: string[] = [];
  for (const row of rows) lines.push(JSON.stringify(row));
  writeFileAtomic(file, lines.length ? lines.join("\n") + "\n" : "");
  return lines.length;
}
