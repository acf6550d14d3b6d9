// Examples -> one NativeBatch, padded to the longest row of the batch (dynamic padding), in the
// layout the native models take (bindings/native.ts NativeBatch):
//   seq2seq: inputIds / attentionMask (B, T) padded with pad; labels (B, Td) padded with -100
//            (the model builds decoder inputs by shifting labels right, -100 -> pad);
//   causal:  inputIds (B, T) right-padded with pad, attentionMask 0 there, labels -100 there
//            (the model shifts labels inside; right padding keeps positions 0..n-1 per row).
import type { NativeBatch } from "../../bindings/native.js";
import { IGNORE_INDEX } from "./build-example.js";
import type { Collate, Example, TaskKind } from "./types.js";

export function makeCollate(kind: TaskKind, padTokenId: number): Collate {
  if (!Number.isInteger(padTokenId) || padTokenId < 0) {
    throw new Error(`makeCollate: expected a token id >= 0 for padding, got ${padTokenId}`);
  }
  return (examples: readonly Example[]): NativeBatch => {
    const B = examples.length;
    if (B === 0) throw new Error("collate: expected at least one example");
    const T = Math.max(...examples.map((e) => e.inputIds.length));
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
    const Td = Math.max(...examples.map((e) => e.labels.length));
    const labels = new Int32Array(B * Td).fill(IGNORE_INDEX);
    examples.forEach((e, b) => labels.set(e.labels, b * Td));
    return { batchSize: B, seqLen: T, inputIds, attentionMask, labels, decoderLen: Td };
  };
}
