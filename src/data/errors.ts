// Errors about training data: every one names where (file, or file:line) and what was wrong.
import path from "node:path";

export class DataError extends Error {
  readonly code = "S2S_DATA";
  constructor(readonly where: string, readonly reason: string) {
    super(`${where}: ${reason}`);
    this.name = "DataError";
  }
}

/** A file as messages name it: relative to the working directory when it lies below it. */
export function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : file;
}
