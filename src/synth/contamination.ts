// The contamination check: a generated question whose seed entity appears in the evaluation set
// is dropped, so the model is not trained on facts the evaluation asks about.
import { readFileSync } from "node:fs";
import { FileFormatError } from "../models/json-file.js";
import { phrasePattern } from "../sources/text-match.js";

export class EvalSetIndex {
  private constructor(private readonly texts: string[]) {}

  /** Strings of the evaluation file (JSONL, or a JSON array of objects): the given fields, or all string fields. */
  static load(file: string, fields?: string[]): EvalSetIndex {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      throw new FileFormatError(file, "file not found (mhqa.contamination.eval_file)");
    }
    let rows: unknown[];
    if (text.trimStart().startsWith("[")) {
      try {
        rows = JSON.parse(text) as unknown[];
      } catch (e) {
        throw new FileFormatError(file, `is not valid JSON (${(e as Error).message})`);
      }
    } else {
      rows = [];
      text.split(/\r?\n/).forEach((line, i) => {
        if (!line.trim()) return;
        try {
          rows.push(JSON.parse(line));
        } catch (e) {
          throw new FileFormatError(`${file}:${i + 1}`, `is not valid JSON (${(e as Error).message})`);
        }
      });
    }
    const texts: string[] = [];
    const collect = (value: unknown, depth: number) => {
      if (typeof value === "string") texts.push(value);
      else if (depth < 4 && Array.isArray(value)) for (const v of value) collect(v, depth + 1);
      else if (depth < 4 && typeof value === "object" && value !== null) for (const v of Object.values(value)) collect(v, depth + 1);
    };
    for (const row of rows) {
      if (fields && typeof row === "object" && row !== null) {
        for (const f of fields) collect((row as Record<string, unknown>)[f], 1);
      } else {
        collect(row, 0);
      }
    }
    return new EvalSetIndex(texts);
  }

  get size(): number {
    return this.texts.length;
  }

  /** Whether `entity` appears (whole words, any case) in any string of the evaluation set. */
  contains(entity: string): boolean {
    const pattern = phrasePattern(entity);
    return pattern !== undefined && this.texts.some((t) => pattern.test(t));
  }
}
