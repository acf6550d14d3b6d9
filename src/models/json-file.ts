// Reading a JSON file and validating it with zod, with errors that name the file, the field
// and what was expected — the one way configs and model files are read.
import { readFileSync } from "node:fs";
import type { z } from "zod";

export class FileFormatError extends Error {
  readonly code = "S2S_CONFIG";
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "FileFormatError";
  }
}

/** Parses JSON text; a syntax error names the file. */
export function parseJsonText(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(file, `is not valid JSON (${(e as Error).message})`);
  }
}

/** Reads a UTF-8 file; a missing or unreadable file is an error naming it. */
export function readTextFile(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(file, code === "ENOENT" ? "file not found" : `cannot be read (${code ?? e})`);
  }
}

export function readJsonFile(file: string): { text: string; value: unknown } {
  const text = readTextFile(file);
  return { text, value: parseJsonText(text, file) };
}

/** Validates `value` with `schema`; every problem is listed as `field: message`. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, file: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.length ? issue.path.join(".") : "(top level)";
    return `  ${field}: ${issue.message}`;
  });
  throw new FileFormatError(file, `invalid:\n${problems.join("\n")}`);
}
