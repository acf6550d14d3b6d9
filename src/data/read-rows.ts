// Reading a data file (JSON array, JSONL or CSV) into rows: plain objects with the line each
// starts on. A malformed row goes to `onBadRow` (which throws, or records it and skips); a file
// that cannot be read or parsed as a whole is always an error.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import { DataError, displayPath } from "./errors.js";

export type DataFormat = "json" | "jsonl" | "csv";

export interface RawRow {
  /** "data/train.jsonl:17" */
  source: string;
  /** Position among the file's rows, bad ones included (0-based). */
  index: number;
  fields: Record<string, unknown>;
}

/** Called with a malformed row's "file:line" and why; throws to stop, returns to skip the row. */
export type BadRowHandler = (source: string, reason: string) => void;

export function formatOf(file: string, format: DataFormat | "auto"): DataFormat {
  if (format !== "auto") return format;
  const ext = path.extname(file).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".csv") return "csv";
  throw new DataError(displayPath(file), `cannot tell the format from the extension '${ext}'; expected .json, .jsonl or .csv, or set data.format`);
}

export function readRows(file: string, format: DataFormat | "auto", onBadRow: BadRowHandler): RawRow[] {
  const name = displayPath(file);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(name, code === "ENOENT" ? "file not found" : `cannot be read (${code ?? String(e)})`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);  // a byte-order mark
  switch (formatOf(file, format)) {
    case "jsonl": return jsonlRows(text, name, onBadRow);
    case "json": return jsonRows(text, name, onBadRow);
    case "csv": return csvRows(text, name, onBadRow);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? "an object" : `a ${typeof v}`;
}

function jsonlRows(text: string, name: string, onBadRow: BadRowHandler): RawRow[] {
  const rows: RawRow[] = [];
  const lines = text.split("\n");
  let index = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const source = `${name}:${i + 1}`;
    const row = index++;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      onBadRow(source, `not valid JSON (${(e as Error).message})`);
      continue;
    }
    if (isObject(value)) rows.push({ source, index: row, fields: value });
    else onBadRow(source, `expected a JSON object, got ${kindOf(value)}`);
  }
  return rows;
}

function jsonRows(text: string, name: string, onBadRow: BadRowHandler): RawRow[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const message = (e as Error).message;
    throw new DataError(`${name}:${errorLine(text, message)}`, `not valid JSON (${message})`);
  }
  if (!Array.isArray(value)) {
    throw new DataError(name, `expected a JSON array of objects, got ${kindOf(value)} (one object per line is .jsonl)`);
  }
  const lines = arrayElementLines(text);
  const rows: RawRow[] = [];
  value.forEach((item, index) => {
    const source = `${name}:${lines[index] ?? 1}`;
    if (!isObject(item)) onBadRow(source, `expected a JSON object, got ${kindOf(item)}`);
    else rows.push({ source, index, fields: item });
  });
  return rows;
}

/** The line of a JSON.parse error, from its "line N" (newer V8) or "position N" (older V8). */
function errorLine(text: string, message: string): number {
  const line = /line (\d+)/.exec(message);
  if (line) return Number(line[1]);
  const position = /position (\d+)/.exec(message);
  if (!position) return 1;
  return text.slice(0, Number(position[1])).split("\n").length;
}

/** The line (1-based) each element of a valid top-level JSON array starts on. */
export function arrayElementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let expectElement = false;
  for (const c of text) {
    if (c === "\n") line++;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r" || c === "\n") continue;
    if (depth === 1 && expectElement && c !== "]") {
      lines.push(line);
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === "]" || c === "}") depth--;
    else if (c === "," && depth === 1) expectElement = true;
  }
  return lines;
}

function csvRows(text: string, name: string, onBadRow: BadRowHandler): RawRow[] {
  const rows: RawRow[] = [];
  let index = 0;  // records and skipped records alike, in file order
  try {
    parseCsv(text, {
      columns: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      on_skip: (err) => {
        index++;
        onBadRow(`${name}:${err?.lines ?? "?"}`, err ? err.message.replace(/ on line \d+$/, "") : "malformed CSV record");
        return undefined;
      },
      // `lines` is the line the record ends on (the one it starts on, unless a quoted field spans lines).
      on_record: (record: Record<string, string>, context) => {
        rows.push({ source: `${name}:${context.lines}`, index: index++, fields: record });
        return record;
      },
    });
  } catch (e) {
    if (e instanceof DataError) throw e;
    const err = e as Error & { lines?: number };
    throw new DataError(`${name}${err.lines ? `:${err.lines}` : ""}`, `not valid CSV (${err.message})`);
  }
  return rows;
}
