// Shared by the trainer tests: tiny datasets as Example arrays (ids drawn directly in the fixture
// models' vocab), a plain collate (right padding, -100 labels) and epoch plans (in order, or
// shuffled by seed and epoch), standing in for src/data's, and a config for a run in a temp folder.
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Collate, Example, TaskKind } from "../src/data/types.js";
import { resolveConfig } from "../src/config/load.js";
import type { TrainingData, PlanEpoch } from "../src/train/training-data.js";

export const modelsRoot = path.resolve(import.meta.dirname, "fixtures/models");

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * Learnable examples: causal rows are a prompt of random ids then its completion (the prompt
 * reversed), loss on the completion only; seq2seq rows map the input to it reversed + eos.
 */
export function makeExamples(kind: TaskKind, n: number, seed: number, options: { firstId?: number; eos?: number } = {}): Example[] {
  const rand = lcg(seed);
  const firstId = options.firstId ?? 3;
  const examples: Example[] = [];
  for (let i = 0; i < n; i++) {
    const len = 2 + Math.floor(rand() * 5);
    const prompt = Array.from({ length: len }, () => firstId + Math.floor(rand() * 20));
    const completion = [...prompt].reverse();
    if (kind === "causal") {
      const ids = [...prompt, ...completion];
      examples.push({
        id: i, source: `test:${i + 1}`, inputIds: Int32Array.from(ids),
        labels: Int32Array.from(ids.map((t, j) => (j < prompt.length ? -100 : t))), promptLength: prompt.length,
        text: { input: prompt.join(" "), target: completion.join(" ") },
      });
    } else {
      examples.push({
        id: i, source: `test:${i + 1}`, inputIds: Int32Array.from([...prompt, options.eos ?? 1]),
        labels: Int32Array.from([...completion, options.eos ?? 1]), promptLength: 0,
        text: { input: prompt.join(" "), target: completion.join(" ") },
      });
    }
  }
  return examples;
}

/** Right padding with `padId`, attention masks, -100 labels in the padding. */
export function collateFor(kind: TaskKind, padId = 0): Collate {
  return (examples) => {
    const B = examples.length;
    const T = Math.max(...examples.map((e) => e.inputIds.length));
    const inputIds = new Int32Array(B * T).fill(padId);
    const attentionMask = new Int32Array(B * T);
    examples.forEach((e, b) => {
      inputIds.set(e.inputIds, b * T);
      attentionMask.fill(1, b * T, b * T + e.inputIds.length);
    });
    if (kind === "causal") {
      const labels = new Int32Array(B * T).fill(-100);
      examples.forEach((e, b) => labels.set(e.labels, b * T));
      return { batchSize: B, seqLen: T, inputIds, attentionMask, labels };
    }
    const Td = Math.max(...examples.map((e) => e.labels.length));
    const labels = new Int32Array(B * Td).fill(-100);
    examples.forEach((e, b) => labels.set(e.labels, b * Td));
    return { batchSize: B, seqLen: T, inputIds, attentionMask, labels, decoderLen: Td };
  };
}

/** Batches in order, the same every epoch. */
export const inOrder: PlanEpoch = (examples, { batchSize }) => {
  const batches: number[][] = [];
  for (let i = 0; i < examples.length; i += batchSize) batches.push(examples.slice(i, i + batchSize).map((_, j) => i + j));
  return batches;
};

/** A Fisher-Yates shuffle seeded by (seed, epoch), then batches. */
export const shuffled: PlanEpoch = (examples, { batchSize, seed, epoch }) => {
  const rand = lcg(seed * 1000 + epoch + 1);
  const order = examples.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return batches;
};

export function dataset(kind: TaskKind, train: Example[], valid: Example[], planEpoch: PlanEpoch = shuffled, padId = 0): TrainingData {
  return { kind, train, valid, planEpoch, collate: collateFor(kind, padId) };
}

export function tempDir(prefix = "s2s-train-test-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A resolved config for a fixture model, writing into `outputDir`. */
export function config(model: string, outputDir: string, overrides: string[] = []) {
  return resolveConfig({
    overrides: [`model.path=${path.join(modelsRoot, model)}`, "data.train_file=(prepared by the test)", `output.dir=${outputDir}`,
                "train.logging_steps=1", ...overrides],
  });
}
