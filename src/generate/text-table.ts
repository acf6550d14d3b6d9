// Side-by-side text columns for a terminal: each column gets an equal share of the width and its
// text is word-wrapped into it (words longer than a column are broken). When the columns would
// be narrower than `minColumn`, the cells are printed one under the other instead.
// Widths count code points (no East Asian double-width handling).

export interface Column {
  header: string;
  /** Paragraphs of the cell; each is wrapped on its own. */
  lines: string[];
}

/** Wraps one paragraph into lines of at most `width` code points. */
export function wrapText(text: string, width: number): string[] {
  const out: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(/\s+/).filter((w) => w.length > 0)) {
      let w = [...word];
      if (line.length > 0 && [...line].length + 1 + w.length <= width) {
        line += " " + word;
        continue;
      }
      if (line.length > 0) out.push(line);
      line = "";
      while (w.length > width) {
        out.push(w.slice(0, width).join(""));
        w = w.slice(width);
      }
      line = w.join("");
    }
    out.push(line);
  }
  return out;
}

function pad(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - [...text].length));
}

/** The table as lines, `totalWidth` columns wide at most. */
export function renderColumns(columns: readonly Column[], totalWidth: number, minColumn = 16): string[] {
  const n = columns.length;
  const inner = Math.floor((totalWidth - 1 - 3 * n) / n);  // "│ " + cell + " " per column, and a closing "│"
  if (n === 0) return [];
  if (inner < minColumn) return renderStacked(columns, Math.max(totalWidth, 20));
  const rule = (left: string, mid: string, right: string) =>
    left + columns.map(() => "─".repeat(inner + 2)).join(mid) + right;
  const row = (cells: string[]) => "│" + cells.map((c) => ` ${pad(c, inner)} `).join("│") + "│";
  const wrapped = columns.map((c) => c.lines.flatMap((l) => wrapText(l, inner)));
  const headers = columns.map((c) => wrapText(c.header, inner));
  const lines = [rule("┌", "┬", "┐")];
  for (let i = 0; i < Math.max(...headers.map((h) => h.length)); i++) lines.push(row(headers.map((h) => h[i] ?? "")));
  lines.push(rule("├", "┼", "┤"));
  for (let i = 0; i < Math.max(...wrapped.map((w) => w.length)); i++) lines.push(row(wrapped.map((w) => w[i] ?? "")));
  lines.push(rule("└", "┴", "┘"));
  return lines;
}

function renderStacked(columns: readonly Column[], width: number): string[] {
  const lines: string[] = [];
  for (const c of columns) {
    lines.push(`── ${c.header} ${"─".repeat(Math.max(0, width - [...c.header].length - 4))}`);
    for (const l of c.lines) lines.push(...wrapText(l, width));
  }
  return lines;
}
