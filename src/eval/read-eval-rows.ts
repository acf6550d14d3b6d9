// The rows `s2s-train eval` scores: input, reference(s) and an optional category from a JSON array,
// JSONL or CSV file. A minimal reader kept in this one function so that data preparation's reader
// (src/data) can replace it; errors name the file, the line and the field.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import { FileFormatError } from "../models/json-file.js";

export interface EvalRow {
  /** "data/test.jsonl:17" (JSONL, CSV) or "data/test.json[16]" (JSON array), for messages. */
  source: string;
  input: string;
  /** One reference, or several (a JSON array of strings in JSON/JSONL files). */
  reference: string | string[];
  category?: string;
}

export interface EvalFields {
  input: string;
  target: string;
  category?: string;
}

export type EvalFileFormat = "json" | "jsonl" | "csv";

function formatOf(file: string): EvalFileFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".csv") return "csv";
  throw new FileFormatError(file, `cannot tell the format from the extension '${ext}'; expected .json, .jsonl or .csv`);
}

function rawRows(name: string, text: string, format: EvalFileFormat): { source: string; fields: unknown }[] {
  if (format === "jsonl") {
    const rows: { source: string; fields: unknown }[] = [];
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      const source = `${name}:${i + 1}`;
      try {
        rows.push({ source, fields: JSON.parse(line) });
      } catch (e) {
        throw new FileFormatError(source, `is not valid JSON (${(e as Error).message})`);
      }
    });
    return rows;
  }
  if (format === "json") {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new FileFormatError(name, `is not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(value)) throw new FileFormatError(name, "expected a JSON array of objects (one per example)");
    return value.map((fields, i) => ({ source: `${name}[${i}]`, fields }));
  }
  let records: { record: Record<string, string>; info: { lines: number } }[];
  try {
    records = parseCsv(text, { columns: true, skip_empty_lines: true, info: true }) as typeof records;
  } catch (e) {
    throw new FileFormatError(name, `is not valid CSV (${(e as Error).message})`);
  }
  // info.lines: the line the record ends on (its only line unless a quoted cell holds newlines).
  return records.map(({ record, info }) => ({ source: `${name}:${info.lines}`, fields: record }));
}

function text(fields: Record<string, unknown>, field: string, source: string, role: string): string {
  const v = fields[field];
  if (v === undefined) throw new FileFormatError(source, `field "${field}" (${role}) is missing; fields are ${Object.keys(fields).join(", ") || "none"}`);
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw new FileFormatError(source, `field "${field}" (${role}): expected a string, got ${v === null ? "null" : typeof v}`);
}

/** Reads every row of `file` (format by extension); an empty file or a bad row is an error. */
export function readEvalRows(file: string, fields: EvalFields): EvalRow[] {
  let content: string;
  try {
    content = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(file, code === "ENOENT" ? "file not found" : `cannot be read (${code ?? String(e)})`);
  }
  if (content.charCodeAt(0) === 0xfeff) content = content.slice(1);
  const rows = rawRows(file, content, formatOf(file)).map(({ source, fields: raw }) => {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new FileFormatError(source, "expected an object with the input and target fields");
    }
    const f = raw as Record<string, unknown>;
    const target = f[fields.target];
    let reference: string | string[];
    if (Array.isArray(target)) {
      if (target.length === 0 || !target.every((t) => typeof t === "string")) {
        throw new FileFormatError(source, `field "${fields.target}" (target): expected a string or a non-empty array of strings`);
      }
      reference = target as string[];
    } else {
      reference = text(f, fields.target, source, "target");
    }
    const row: EvalRow = { source, input: text(f, fields.input, source, "input"), reference };
    if (fields.category !== undefined && f[fields.category] !== undefined && f[fields.category] !== null && f[fields.category] !== "") {
      row.category = text(f, fields.category, source, "category");
    }
    return row;
  });
  if (rows.length === 0) throw new FileFormatError(file, "has no examples");
  return rows;
}
