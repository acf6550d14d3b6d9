// Seeds derived from the run's seed, so that nothing random carries state from step to step:
// the dropout masks of micro-batch m of optimizer step s depend on (seed, s, m) only, and a run
// resumed at any step draws exactly what the uninterrupted run drew.

const MASK64 = (1n << 64n) - 1n;

/** splitmix64's output function: a bijective mix of 64 bits. */
function mix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** The dropout seed of one micro-batch: 53 bits, so it crosses into the native core exactly. */
export function dropoutSeed(seed: number, step: number, microBatch: number): number {
  const h = mix64(mix64(mix64(BigInt(seed)) ^ BigInt(step)) ^ BigInt(microBatch));
  return Number(h >> 11n);
}
