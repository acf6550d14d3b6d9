// The tokenizers sacreBLEU applies before counting BLEU n-grams: `13a` (its default, the
// mteval-v13a.pl rules used by WMT), `intl` (mteval-v14 international), `char` and `none`.
// Each returns the segment as space-separated tokens, as sacreBLEU's tokenizers do.
import { codePoints, pySquashSpaces } from "./python-text.js";

export type BleuTokenizerName = "13a" | "intl" | "char" | "none";
export const BLEU_TOKENIZERS: readonly BleuTokenizerName[] = ["13a", "intl", "char", "none"];

// mteval-v13a's language-dependent rules, in order. The first puts spaces around ASCII symbols
// and punctuation except `'`, `.`, `,` and `-`; periods and commas are split off unless they sit
// between digits; a dash is split off after a digit.
const RULES_13A: [RegExp, string][] = [
  [/([{-~[-` -&(-+:-@\/])/gu, " $1 "],
  [/([^0-9])([.,])/gu, "$1 $2 "],
  [/([.,])([^0-9])/gu, " $1 $2"],
  [/([0-9])(-)/gu, "$1 $2 "],
];

function tokenize13a(line: string): string {
  let s = line.replaceAll("<skipped>", "").replaceAll("-\n", "").replaceAll("\n", " ");
  if (s.includes("&")) {
    s = s.replaceAll("&quot;", '"').replaceAll("&amp;", "&").replaceAll("&lt;", "<").replaceAll("&gt;", ">");
  }
  // The padding spaces let the period/comma rules see a segment's first and last character.
  s = ` ${s} `;
  for (const [pattern, replacement] of RULES_13A) s = s.replace(pattern, replacement);
  return pySquashSpaces(s);
}

// mteval-v14's international rules: punctuation split off unless between digits, symbols always.
const RULES_INTL: [RegExp, string][] = [
  [/(\P{N})(\p{P})/gu, "$1 $2 "],
  [/(\p{P})(\P{N})/gu, " $1 $2"],
  [/(\p{S})/gu, " $1 "],
];

function tokenizeIntl(line: string): string {
  let s = line;
  for (const [pattern, replacement] of RULES_INTL) s = s.replace(pattern, replacement);
  return pySquashSpaces(s);
}

/** Tokenizes one segment the way sacreBLEU's tokenizer of that name does. */
export function bleuTokenize(line: string, tokenizer: BleuTokenizerName): string {
  switch (tokenizer) {
    case "13a":
      return tokenize13a(line);
    case "intl":
      return tokenizeIntl(line);
    case "char":
      // Every code point becomes a token (spaces too, which then vanish when split into words).
      return codePoints(line).join(" ");
    case "none":
      return line;
  }
}
