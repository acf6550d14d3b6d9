// Does a text mention a phrase? Case-insensitive, whitespace-insensitive, on word boundaries that
// understand Unicode letters ("Zürich" is one word; JavaScript's \b would split it).
const wordChar = "[\\p{L}\\p{N}_]";

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A regular expression matching `phrase` as whole words, any case, any run of whitespace. */
export function phrasePattern(phrase: string, flags = "iu"): RegExp | undefined {
  const words = phrase.trim().split(/\s+/u).filter(Boolean);
  if (words.length === 0) return undefined;
  const body = words.map(escapeRegExp).join("\\s+");
  return new RegExp(`(?<!${wordChar})${body}(?!${wordChar})`, flags);
}

export function mentions(text: string, phrase: string): boolean {
  const pattern = phrasePattern(phrase);
  return pattern !== undefined && pattern.test(text);
}

/** `text` with the first mention of `phrase` replaced by `replacement` (unchanged if absent). */
export function replaceMention(text: string, phrase: string, replacement: string): string {
  const pattern = phrasePattern(phrase);
  return pattern ? text.replace(pattern, () => replacement) : text;
}
