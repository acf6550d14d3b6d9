// The rows `s2s-train eval` scores: input (through an optional prompt template, as data.prompt_template
// fills it in training), reference(s) and an optional category, read by data preparation's row
// reader (JSON array, JSONL, CSV). Unlike training data, a reference may be empty or a list of
// strings (several references per example); errors name the file, the line and the field.
import path from "node:path";
import { DataError } from "../data/errors.js";
import { readRows } from "../data/read-rows.js";
import { fieldText, parseTemplate, renderTemplate } from "../data/template.js";

export interface EvalRow {
  /** "data/test.jsonl:17", for messages. */
  source: string;
  /** The input, after the prompt template. */
  input: string;
  /** One reference, or several (a list of strings in JSON/JSONL files). */
  reference: string | string[];
  category?: string;
}

export interface EvalFields {
  input: string;
  target: string;
  category?: string;
  /** "{field}" placeholders filled from the row ("{{"/"}}" literal braces); default: the input field. */
  promptTemplate?: string;
}

/** Reads every row of `file` (format by extension); an empty file or a bad row is an error. */
export function readEvalRows(file: string, fields: EvalFields): EvalRow[] {
  const template = fields.promptTemplate === undefined ? undefined : parseTemplate(fields.promptTemplate, "--prompt-template");
  const ext = path.extname(file).toLowerCase();
  if (![".json", ".jsonl", ".ndjson", ".csv"].includes(ext)) {
    throw new DataError(file, `cannot tell the format from the extension '${ext}'; expected .json, .jsonl or .csv`);
  }
  const rows = readRows(file, "auto", (source, reason) => {
    throw new DataError(source, reason);
  }).map(({ source, fields: f }): EvalRow => {
    const target = f[fields.target];
    let reference: string | string[];
    if (Array.isArray(target)) {
      if (target.length === 0 || !target.every((t) => typeof t === "string")) {
        throw new DataError(source, `field '${fields.target}' (target) expected a string or a non-empty list of strings`);
      }
      reference = target as string[];
    } else {
      reference = fieldText(f, fields.target, source, "target");
    }
    const input = template ? renderTemplate(template, f, source) : fieldText(f, fields.input, source, "input");
    const row: EvalRow = { source, input, reference };
    const category = fields.category === undefined ? undefined : f[fields.category];
    if (category !== undefined && category !== null && category !== "") {
      row.category = fieldText(f, fields.category!, source, "category");
    }
    return row;
  });
  if (rows.length === 0) throw new DataError(file, "has no examples");
  return rows;
}
