// The prompts of `s2s-train generate --input FILE.jsonl`: one JSON object per line with the prompt
// text in a field ("input" by default); blank lines are skipped. A bad line is an error naming
// the file, the line and what was expected.
import { FileFormatError, readTextFile } from "../models/json-file.js";

export function readPromptsFile(file: string, field = "input"): string[] {
  const text = readTextFile(file);
  const prompts: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new FileFormatError(`${file}:${i + 1}`, `is not valid JSON (${(e as Error).message})`);
    }
    const value = row !== null && typeof row === "object" && !Array.isArray(row) ? (row as Record<string, unknown>)[field] : undefined;
    if (typeof value !== "string") {
      throw new FileFormatError(`${file}:${i + 1}`, `expected an object with a string field "${field}", got ${line.slice(0, 120)}`);
    }
    prompts.push(value);
  });
  if (prompts.length === 0) throw new FileFormatError(file, "holds no prompts (expected JSON lines like {\"input\": \"...\"})");
  return prompts;
}
