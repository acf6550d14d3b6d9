// Python's string semantics where the reference metrics depend on them. JavaScript differs in
// three places that change scores: `\s`/`str.split()` (Python has no U+FEFF but adds U+001C–U+001F
// and U+0085), `\w`/`\b` (ASCII in JavaScript, Unicode letters and numbers in Python) and
// indexing (UTF-16 code units in JavaScript, code points in Python).

/** The characters Python's `str.isspace()` (and so `str.split()` and `re`'s `\s`) accepts. */
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_SPACE_RUN = new RegExp(`[${PY_SPACE}]+`, "u");
const PY_TRAILING_SPACE = new RegExp(`[${PY_SPACE}]+$`, "u");

/** Python's `\w` on `str` patterns: letters, numbers and `_` (category L* or N*). */
export const PY_WORD_CHAR = "[\\p{L}\\p{N}_]";

/** `s.split()`: splits on runs of Python whitespace and drops empty pieces. */
export function pySplit(s: string): string[] {
  return s.split(PY_SPACE_RUN).filter((piece) => piece.length > 0);
}

/** `s.rstrip()` */
export function pyRstrip(s: string): string {
  return s.replace(PY_TRAILING_SPACE, "");
}

/** `' '.join(s.split())`: one space between words, none at the ends. */
export function pySquashSpaces(s: string): string {
  return pySplit(s).join(" ");
}

/** The code points of `s`, as Python indexes a `str`. */
export function codePoints(s: string): string[] {
  return Array.from(s);
}
