// The order of one epoch: batches of example indexes, a pure function of (examples, seed,
// epoch), so a resumed run recomputes the same plan and skips the batches it has done.
// With group_by_length, as transformers' LengthGroupedSampler: shuffle, cut into mega-batches of
// up to 50 batches, sort each by length (longest first) and cut it into batches, so a batch
// holds similar lengths (little padding); then the batch order is shuffled.
import { seededRandom, shuffled } from "../util/rng.js";
import type { Example } from "./types.js";

export interface PlanOptions {
  batchSize: number;
  seed: number;
  /** 0-based; each epoch has its own order. */
  epoch: number;
  groupByLength: boolean;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The sort key: encoder + decoder tokens for seq2seq; for causal (labels as long as the
 *  input) twice the length, which orders the same. */
function lengthOf(e: Example): number {
  return e.inputIds.length + e.labels.length;
}

export function planEpoch(examples: readonly Example[], options: PlanOptions): number[][] {
  const { batchSize, seed, epoch } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`planEpoch: expected batchSize >= 1, got ${batchSize}`);
  if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`planEpoch: expected epoch >= 0, got ${epoch}`);
  // Seed and epoch mixed so that (seed, epoch + 1) and (seed + 1, epoch) differ.
  const random = seededRandom(Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77));
  const order = shuffled(examples.map((_, i) => i), random);
  if (!options.groupByLength) return chunks(order, batchSize);
  const megaBatches = Math.max(1, Math.min(50, Math.floor(examples.length / (batchSize * 4))));
  const batches: number[][] = [];
  for (const mega of chunks(order, batchSize * megaBatches)) {
    // Stable sort: equal lengths keep their shuffled order.
    mega.sort((a, b) => lengthOf(examples[b]!) - lengthOf(examples[a]!));
    batches.push(...chunks(mega, batchSize));
  }
  return shuffled(batches, random);
}
