// Answer normalisation and soft exact match for curation.
// TO BE REPLACED by src/metrics (issue 6: SQuAD normalisation, soft exact match) when it lands on
// main; this local copy follows the SQuAD v1.1 evaluation script's normalize_answer
// (lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace), with
// Unicode-aware word boundaries where Python's regex \b is Unicode and JavaScript's is not.

// Python's string.punctuation: the 32 ASCII punctuation characters.
const punctuation = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
const articles = /(?<![\p{L}\p{N}_])(a|an|the)(?![\p{L}\p{N}_])/gu;

export function normalizeAnswer(text: string): string {
  let s = text.toLowerCase();
  s = [...s].filter((c) => !punctuation.has(c)).join("");
  s = s.replace(articles, " ");
  return s.split(/\s+/u).filter(Boolean).join(" ");
}

/** Soft exact match: the normalised gold answer is contained in the normalised prediction. */
export function softExactMatch(prediction: string, gold: string): boolean {
  const g = normalizeAnswer(gold);
  const p = normalizeAnswer(prediction);
  if (!g) return p === g;
  return p.includes(g);
}
