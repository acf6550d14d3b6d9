// An on-disk cache of HTTP response bodies keyed by URL: one JSON file per entry under
// <dir>/<2 hex>/<sha256>.json, written atomically so a killed process never leaves a torn entry.
// Entries older than the time-to-live are ignored (and overwritten by the next fetch).
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { writeFileAtomic } from "../io/atomic-write.js";

interface Entry {
  url: string;
  fetchedAt: number;
  body: string;
}

export class DiskCache {
  constructor(readonly dir: string, private readonly ttlMs: number = Number.POSITIVE_INFINITY) {}

  private file(url: string): string {
    const hash = createHash("sha256").update(url).digest("hex");
    return path.join(this.dir, hash.slice(0, 2), `${hash}.json`);
  }

  get(url: string, now = Date.now()): string | undefined {
    let entry: Entry;
    try {
      entry = JSON.parse(readFileSync(this.file(url), "utf8")) as Entry;
    } catch {
      return undefined;  // absent, or unreadable: fetch again
    }
    if (entry.url !== url || typeof entry.body !== "string" || now - entry.fetchedAt > this.ttlMs) return undefined;
    return entry.body;
  }

  set(url: string, body: string, now = Date.now()): void {
    const entry: Entry = { url, fetchedAt: now, body };
    writeFileAtomic(this.file(url), JSON.stringify(entry));
  }
}
