// Examples -> one NativeBatch, padded to the longest row of the batch (dynamic padding), or up
// to a multiple of padToMultipleOf (transformers' DataCollator option: few distinct shapes, so a
// GPU replays its recorded training steps, s2s::PassReplay), in the layout the native models take
// (bindings/native.ts NativeBatch):
//   seq2seq: inputIds / attentionMask (B, T) padded with pad; labels (B, Td) padded with -100
//            (the model builds decoder inputs by shifting labels right, -100 -> pad);
//   causal:  inputIds (B, T) right-padded with pad, attentionMask 0 there, labels -100 there
//            (the model shifts labels inside; right padding keeps positions 0..n-1 per row).
import type { NativeBatch } from "../../bindings/native.js";
import { IGNORE_INDEX } from "./build-example.js";
import type { Collate, Example, TaskKind } from "./types.js";

export interface CollateOptions {
  /** Pad lengths up to a multiple of this (null or absent: to the longest row). */
  padToMultipleOf?: number | null;
  /** The input length padding never goes past (GPT-2's n_positions); rows longer stay as long. */
  maxInputLength?: number;
}

export function makeCollate(kind: TaskKind, padTokenId: number, options: CollateOptions = {}): Collate {
  if (!Number.isInteger(padTokenId) || padTokenId < 0) {
    throw new Error(`makeCollate: expected a token id >= 0 for padding, got ${padTokenId}`);
  }
  const multiple = options.padToMultipleOf ?? null;
  if (multiple !== null && (!Number.isInteger(multiple) || multiple < 1)) {
    throw new Error(`makeCollate: expected padToMultipleOf to be an integer >= 1, got ${multiple}`);
  }
  const padded = (longest: number, cap = Infinity): number => {
    if (multiple === null) return longest;
    return Math.max(longest, Math.min(Math.ceil(longest / multiple) * multiple, cap));
  };
  return (examples: readonly Example[]): NativeBatch => {
    const B = examples.length;
    if (B === 0) throw new Error("collate: expected at least one example");
    const T = padded(Math.max(...examples.map((e) => e.inputIds.length)), options.maxInputLength);
    const inputIds = new Int32Array(B * T).fill(padTokenId);
    const attentionMask = new Int32Array(B * T);
    examples.forEach((e, b) => {
      inputIds.set(e.inputIds, b * T);
      attentionMask.fill(1, b * T, b * T + e.inputIds.length);
    });
    if (kind === "causal") {
      const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
      examples.forEach((e, b) => {
        if (e.labels.length !== e.inputIds.length) {
          throw new Error(`collate: ${e.source}: a causal example needs labels as long as its input (${e.labels.length} vs ${e.inputIds.length})`);
        }
        labels.set(e.labels, b * T);
      });
      return { batchSize: B, seqLen: T, inputIds, attentionMask, labels };
    }
    const Td = padded(Math.max(...examples.map((e) => e.labels.length)));
    const labels = new Int32Array(B * Td).fill(IGNORE_INDEX);
    examples.forEach((e, b) => labels.set(e.labels, b * Td));
    return { batchSize: B, seqLen: T, inputIds, attentionMask, labels, decoderLen: Td };
  };
}
