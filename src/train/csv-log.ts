// logs/train.csv and logs/valid.csv: one header line, then one row per log event, appended as the
// run goes. The report reads exactly these columns. A resumed run first drops the rows after its
// checkpoint's step, so the files read as if the run had never stopped.
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../io/atomic-write.js";

export const TRAIN_COLUMNS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_seconds"] as const;
export const VALID_COLUMNS = ["step", "epoch", "eval_loss", "perplexity"] as const;

type Cell = number | string | null | undefined;

function cell(v: Cell): string {
  if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) return "";
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export class CsvLog {
  private columns: string[] | undefined;

  /** `columns`: the fixed leading columns; extra keys of the first row become further columns. */
  constructor(readonly file: string, private readonly leading: readonly string[]) {
    if (existsSync(file)) {
      const header = readFileSync(file, "utf8").split("\n")[0];
      if (header) this.columns = header.split(",");
    }
  }

  append(row: Record<string, Cell>): void {
    if (!this.columns) {
      this.columns = [...this.leading, ...Object.keys(row).filter((k) => !this.leading.includes(k))];
      writeFileAtomic(this.file, this.columns.join(",") + "\n");
    }
    appendFileSync(this.file, this.columns.map((c) => cell(row[c])).join(",") + "\n");
  }

  /** Columns of rows not in the header (written from the first row). */
  missingColumns(row: Record<string, Cell>): string[] {
    return this.columns ? Object.keys(row).filter((k) => !this.columns!.includes(k)) : [];
  }

  /** Keeps the header and the rows whose step is at most `step`. */
  truncateAfter(step: number): void {
    if (!existsSync(this.file)) return;
    const lines = readFileSync(this.file, "utf8").split("\n").filter((l) => l !== "");
    const kept = lines.slice(0, 1).concat(lines.slice(1).filter((l) => Number(l.split(",")[0]) <= step));
    writeFileAtomic(this.file, kept.join("\n") + "\n");
  }
}
