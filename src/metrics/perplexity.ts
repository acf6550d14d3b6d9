// Perplexity from a mean token cross-entropy (natural log), as transformers' examples report it.

/** exp(evalLoss); Infinity where that overflows (run_clm.py's OverflowError case), NaN for NaN. */
export function perplexity(evalLoss: number): number {
  return Math.exp(evalLoss);
}
