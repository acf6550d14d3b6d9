// Job state in an embedded SQLite file (<job>/state.sqlite): every item's status, input, output,
// attempts, rejection reason and errors, plus each finished LLM step of an item, so a job killed
// at any point resumes without redoing finished items or steps and without losing any.
//
// SQLite comes from node-sqlite3-wasm: SQLite compiled to WebAssembly with a VFS over node:fs.
// It is pure JS + wasm (no install script, no native build, no prebuilt download), which matters
// here because npm skips dependencies' install scripts unless allowScripts lists them, Node 20 has
// no node:sqlite, and better-sqlite3/sqlite3 fetch or compile native binaries at install time.
//
// Durability: WAL journal with locking_mode=EXCLUSIVE (WAL without shared memory, which this VFS
// does not provide) and synchronous=NORMAL. A killed process loses nothing committed (the WAL is
// in the OS page cache); a power cut may roll back the last commits but never corrupts the file.
// The VFS locks with a "<db>.lock" directory that a killed process leaves behind; job.lock (our
// pid) tells a stale lock from a live job, and only a stale one is removed.
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import type { TokenUsage } from "../llm/types.js";

// A CommonJS package whose typings declare named exports only: load it with require.
const { Database } = createRequire(import.meta.url)("node-sqlite3-wasm") as typeof import("node-sqlite3-wasm");
type Db = InstanceType<typeof Database>;

export type ItemStatus = "pending" | "running" | "kept" | "rejected" | "failed";

export interface ItemRow {
  stage: string;
  id: string;
  seq: number;
  status: ItemStatus;
  input: unknown;
  output: unknown;
  reason: string | null;
  detail: string | null;
  error: string | null;
  attempts: number;
  promptTokens: number;
  completionTokens: number;
}

export class JobLockedError extends Error {
  readonly code = "S2S_JOB_LOCKED";
  constructor(dir: string, pid: number) {
    super(`${dir} is in use by process ${pid} on this machine; wait for it or stop it first`);
    this.name = "JobLockedError";
  }
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  stage TEXT NOT NULL,
  id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'kept', 'rejected', 'failed')),
  input TEXT NOT NULL,
  output TEXT,
  reason TEXT,
  detail TEXT,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (stage, id)
);
CREATE INDEX IF NOT EXISTS items_by_status ON items (stage, status, seq);
CREATE TABLE IF NOT EXISTS steps (
  stage TEXT NOT NULL,
  item_id TEXT NOT NULL,
  step TEXT NOT NULL,
  value TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (stage, item_id, step)
);
`;

export class JobStore {
  private constructor(readonly dir: string, private readonly db: Db, private readonly lockFile: string) {}

  static open(dir: string): JobStore {
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "state.sqlite");
    const lockFile = path.join(dir, "job.lock");
    takeJobLock(dir, lockFile, file);
    let db: Db;
    try {
      db = new Database(file);
      db.exec("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
      db.exec(schema);
    } catch (e) {
      rmSync(lockFile, { force: true });
      throw new Error(`${file}: cannot open the job state (${(e as Error).message})`);
    }
    return new JobStore(dir, db, lockFile);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
    rmSync(this.lockFile, { force: true });
  }

  getMeta(key: string): string | undefined {
    const row = this.db.get("SELECT value FROM meta WHERE key = ?", [key]) as { value: string } | null;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value]);
  }

  /** Runs `fn` in one transaction: all of its writes land, or none. Nested calls join the outer one. */
  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.db.exec("COMMIT");
      return result;
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    }
  }

  /** Forgets a stage: its items, their steps and its meta keys (identity, time, "<stage>:…"), so it can start over. */
  clearStage(stage: string): void {
    this.transaction(() => {
      this.db.run("DELETE FROM steps WHERE stage = ?", [stage]);
      this.db.run("DELETE FROM items WHERE stage = ?", [stage]);
      this.db.run("DELETE FROM meta WHERE key = ? OR key = ? OR substr(key, 1, ?) = ?",
        [`identity:${stage}`, `seconds:${stage}`, stage.length + 1, `${stage}:`]);
    });
  }

  /** Adds items that are not there yet (same stage and id: left as they are). Returns how many were new. */
  addItems(stage: string, items: { id: string; input: unknown }[]): number {
    let added = 0;
    this.transaction(() => {
      const next = (this.db.get("SELECT COALESCE(MAX(seq), -1) + 1 AS n FROM items WHERE stage = ?", [stage]) as { n: number }).n;
      const now = new Date().toISOString();
      for (const item of items) {
        const r = this.db.run(
          "INSERT OR IGNORE INTO items (stage, id, seq, status, input, updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
          [stage, item.id, next + added, JSON.stringify(item.input), now]);
        added += r.changes;
      }
    });
    return added;
  }

  /** Items to work on: pending, interrupted (running) and failed ones with attempts left, in order. */
  workList(stage: string, maxAttempts: number): ItemRow[] {
    return (this.db.all(
      "SELECT * FROM items WHERE stage = ? AND (status IN ('pending', 'running') OR (status = 'failed' AND attempts < ?)) ORDER BY seq",
      [stage, maxAttempts]) as Record<string, unknown>[]).map(toItem);
  }

  items(stage: string, status?: ItemStatus): ItemRow[] {
    const rows = status
      ? this.db.all("SELECT * FROM items WHERE stage = ? AND status = ? ORDER BY seq", [stage, status])
      : this.db.all("SELECT * FROM items WHERE stage = ? ORDER BY seq", [stage]);
    return (rows as Record<string, unknown>[]).map(toItem);
  }

  countItems(stage: string): number {
    return (this.db.get("SELECT COUNT(*) AS n FROM items WHERE stage = ?", [stage]) as { n: number }).n;
  }

  markRunning(stage: string, id: string): void {
    this.db.run("UPDATE items SET status = 'running', attempts = attempts + 1, updated_at = ? WHERE stage = ? AND id = ?",
      [new Date().toISOString(), stage, id]);
  }

  /** Final state of an item; its usage is the sum over its stored steps. */
  finish(stage: string, id: string, outcome:
    | { status: "kept"; output: unknown }
    | { status: "rejected"; reason: string; detail?: string; output?: unknown }
    | { status: "failed"; error: string }): void {
    const usage = this.stepUsage(stage, id);
    const output = outcome.status === "failed" ? null : outcome.output === undefined ? null : JSON.stringify(outcome.output);
    this.db.run(
      `UPDATE items SET status = ?, output = ?, reason = ?, detail = ?, error = ?, prompt_tokens = ?, completion_tokens = ?, updated_at = ?
       WHERE stage = ? AND id = ?`,
      [outcome.status, output,
        outcome.status === "rejected" ? outcome.reason : null,
        outcome.status === "rejected" ? outcome.detail ?? null : null,
        outcome.status === "failed" ? outcome.error : null,
        usage.promptTokens, usage.completionTokens, new Date().toISOString(), stage, id]);
  }

  /** Makes failed items runnable again (attempts back to 0). */
  resetFailed(stage: string): number {
    return this.db.run("UPDATE items SET status = 'pending', attempts = 0 WHERE stage = ? AND status = 'failed'", [stage]).changes;
  }

  getStep(stage: string, itemId: string, step: string): { value: unknown } | undefined {
    const row = this.db.get("SELECT value FROM steps WHERE stage = ? AND item_id = ? AND step = ?", [stage, itemId, step]) as
      { value: string } | null;
    return row ? { value: JSON.parse(row.value) } : undefined;
  }

  putStep(stage: string, itemId: string, step: string, value: unknown, usage: TokenUsage): void {
    this.db.run(
      `INSERT INTO steps (stage, item_id, step, value, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (stage, item_id, step) DO UPDATE SET value = excluded.value,
         prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens`,
      [stage, itemId, step, JSON.stringify(value ?? null), usage.promptTokens, usage.completionTokens]);
  }

  stepUsage(stage: string, itemId: string): TokenUsage {
    const row = this.db.get(
      "SELECT COALESCE(SUM(prompt_tokens), 0) AS p, COALESCE(SUM(completion_tokens), 0) AS c FROM steps WHERE stage = ? AND item_id = ?",
      [stage, itemId]) as { p: number; c: number };
    return { promptTokens: row.p, completionTokens: row.c };
  }

  /** Counts for the report: by status, and rejected items by reason. */
  tally(stage: string): { items: number; byStatus: Record<ItemStatus, number>; reasons: Record<string, number>; usage: TokenUsage } {
    const byStatus: Record<ItemStatus, number> = { pending: 0, running: 0, kept: 0, rejected: 0, failed: 0 };
    for (const r of this.db.all("SELECT status, COUNT(*) AS n FROM items WHERE stage = ? GROUP BY status", [stage]) as { status: ItemStatus; n: number }[]) {
      byStatus[r.status] = r.n;
    }
    const reasons: Record<string, number> = {};
    for (const r of this.db.all(
      "SELECT reason, COUNT(*) AS n FROM items WHERE stage = ? AND status = 'rejected' GROUP BY reason ORDER BY reason", [stage]) as
      { reason: string; n: number }[]) {
      reasons[r.reason] = r.n;
    }
    // Tokens spent by every step, including those of items that later failed or are unfinished.
    const u = this.db.get(
      "SELECT COALESCE(SUM(prompt_tokens), 0) AS p, COALESCE(SUM(completion_tokens), 0) AS c FROM steps WHERE stage = ?", [stage]) as
      { p: number; c: number };
    const items = Object.values(byStatus).reduce((a, b) => a + b, 0);
    return { items, byStatus, reasons, usage: { promptTokens: u.p, completionTokens: u.c } };
  }
}

function toItem(r: Record<string, unknown>): ItemRow {
  return {
    stage: r.stage as string,
    id: r.id as string,
    seq: r.seq as number,
    status: r.status as ItemStatus,
    input: JSON.parse(r.input as string),
    output: r.output === null ? null : JSON.parse(r.output as string),
    reason: r.reason as string | null,
    detail: r.detail as string | null,
    error: r.error as string | null,
    attempts: r.attempts as number,
    promptTokens: r.prompt_tokens as number,
    completionTokens: r.completion_tokens as number,
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** One process per job folder; a lock left by a dead process (or another machine's) is taken over. */
function takeJobLock(dir: string, lockFile: string, dbFile: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, "wx");
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname() }));
      closeSync(fd);
      // Ours now: a SQLite lock directory still there was left by a killed process.
      rmSync(`${dbFile}.lock`, { recursive: true, force: true });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let owner: { pid?: number; host?: string } = {};
    try {
      owner = JSON.parse(readFileSync(lockFile, "utf8")) as typeof owner;
    } catch {
      // unreadable: a process died while writing it
    }
    if (typeof owner.pid === "number" && owner.host !== undefined && owner.host !== hostname()) {
      throw new Error(`${dir} is locked by process ${owner.pid} on ${owner.host}; delete ${lockFile} if that job is gone`);
    }
    if (typeof owner.pid === "number" && owner.pid !== process.pid && processAlive(owner.pid)) {
      throw new JobLockedError(dir, owner.pid);
    }
    rmSync(lockFile, { force: true });
  }
  if (!existsSync(lockFile)) throw new Error(`${lockFile}: cannot take the job lock`);
}
