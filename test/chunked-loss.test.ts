// train.chunked_loss through the trainer: the LM head and the loss a chunk of rows at a time
// (nn::linear_cross_entropy; the trainer knows each micro-batch's seed before the forward, so
// the head's gradients are made in the forward, fp16's included). A chunked run logs the plain
// run's losses and gradient norms and ends with its weights, up to rounding (the CPU's GEMM may
// take another path for a chunk's few rows; the head's gradient sums the chunks in order);
// forward asked for logits takes the plain path; the option reaches the model; the CLI flag and
// the config key are wired. The C++ tests (native/tests/test_chunked_loss.cpp) hold it to the
// PyTorch fixtures and the plain path.
import { describe, expect, it } from "vitest";
import path from "node:path";
import yargs from "yargs";
import { Model } from "../src/models/model.js";
import { trainCommand } from "../src/cli/commands/train.js";
import { resolveTrainConfig } from "../src/train/run-train.js";
import { loadModelForTraining } from "../src/train/load-model.js";
import { readSafetensors, type SafetensorsTensor } from "../src/io/safetensors.js";
import { train, type ProgressEvent } from "../src/train/trainer.js";
import type { TaskKind } from "../src/data/types.js";
import { config, dataset, inOrder, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";

async function run(model: string, kind: TaskKind, weightsFile: string, overrides: string[]) {
  const dir = tempDir();
  const progress: ProgressEvent[] = [];
  const c = config(model, dir, ["train.max_steps=4", "data.batch_size=3",
                                "train.gradient_accumulation_steps=2", "train.lr=5e-3", ...overrides]);
  const examples = makeExamples(kind, 24, 21, kind === "seq2seq" ? { eos: 1 } : {});
  await train({ config: c, data: dataset(kind, examples, [], inOrder), onProgress: (p) => progress.push(p) });
  return { progress, weights: path.join(dir, "final", weightsFile) };
}

/** A saved tensor's values as numbers (F32, or BF16 widened). */
function values(t: SafetensorsTensor): number[] {
  if (t.dtype === "F32") return Array.from(t.data);
  expect(t.dtype).toBe("BF16");
  const bits = Uint32Array.from(t.data as Uint16Array, (b) => b << 16);
  return Array.from(new Float32Array(bits.buffer));
}

/** The largest |a - b| / max(1, |b|) over two lists of numbers. */
function worst(a: number[], b: number[]): number {
  expect(a).toHaveLength(b.length);
  return Math.max(0, ...a.map((x, i) => Math.abs(x - b[i]!) / Math.max(1, Math.abs(b[i]!))));
}

describe("chunked loss in training", () => {
  const cases = [
    { name: "gpt2 LoRA (all-linear)", model: "gpt2", kind: "causal" as const,
      weightsFile: "adapter_model.safetensors", overrides: ["model.lora.target_modules=all-linear"] },
    { name: "llama-gqa full fine-tuning in bfloat16", model: "llama-gqa", kind: "causal" as const,
      weightsFile: "model.safetensors", overrides: ["model.method=full", "model.dtype=bfloat16"] },
    { name: "t5-relu-tied full fine-tuning (tied head)", model: "t5-relu-tied", kind: "seq2seq" as const,
      weightsFile: "model.safetensors", overrides: ["model.method=full"] },
    // fp16: the seed is the loss scale / the step's tokens, known before the forward.
    { name: "gpt2 full fine-tuning in float16 (loss scaling)", model: "gpt2", kind: "causal" as const,
      weightsFile: "model.safetensors", overrides: ["model.method=full", "model.dtype=float16"] },
  ];
  for (const c of cases) {
    it(`${c.name}: the plain run's losses, gradient norms and weights`, async () => {
      const plain = await run(c.model, c.kind, c.weightsFile, c.overrides);
      const chunked = await run(c.model, c.kind, c.weightsFile, [...c.overrides, "train.chunked_loss=true"]);
      expect(plain.progress).toHaveLength(4);
      expect(chunked.progress.map((p) => p.step)).toEqual(plain.progress.map((p) => p.step));
      expect(worst(chunked.progress.map((p) => p.loss ?? NaN), plain.progress.map((p) => p.loss ?? NaN))).toBeLessThan(1e-5);
      expect(worst(chunked.progress.map((p) => p.gradNorm ?? NaN), plain.progress.map((p) => p.gradNorm ?? NaN)))
        .toBeLessThan(1e-4);
      const a = readSafetensors(chunked.weights).tensors, b = readSafetensors(plain.weights).tensors;
      expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
      for (const [name, t] of Object.entries(b)) {
        expect(worst(values(a[name]!), values(t)), name).toBeLessThan(1e-4);
      }
    });
  }

  it("trainStep in float16 (the seed from the batch's own count): the plain path's steps", async () => {
    const batch = {
      inputIds: Int32Array.from([5, 9, 13, 2, 7, 11, 4, 8]), attentionMask: Int32Array.from([1, 1, 1, 1, 1, 1, 1, 0]),
      labels: Int32Array.from([5, 9, 13, 2, -100, 11, 4, -100]), batchSize: 2, seqLen: 4,
    };
    const steps = async (chunked: boolean) => {
      const m = await Model.load(path.join(modelsRoot, "gpt2"), { computeDtype: "float16", trainable: true });
      m.setChunkedLoss(chunked);
      const out: { loss: number; gradNorm: number }[] = [];
      for (let step = 1; step <= 3; step++) out.push(await m.trainStep(batch, { step, lr: 1e-2, maxGradNorm: 1 }));
      return out;
    };
    const plain = await steps(false), chunked = await steps(true);
    expect(worst(chunked.map((r) => r.loss), plain.map((r) => r.loss))).toBeLessThan(1e-5);
    expect(worst(chunked.map((r) => r.gradNorm), plain.map((r) => r.gradNorm))).toBeLessThan(1e-4);
  });

  it("forward asked for logits takes the plain path on a chunked model", async () => {
    const m = await Model.load(path.join(modelsRoot, "llama-gqa"));
    const batch = {
      inputIds: Int32Array.from([5, 9, 13, 2, 7, 11]), attentionMask: Int32Array.from([1, 1, 1, 1, 1, 1]),
      labels: Int32Array.from([5, 9, 13, 2, 7, 11]), batchSize: 2, seqLen: 3,
    };
    const plain = await m.forward(batch, { logits: true });
    m.setChunkedLoss(true);
    const withLogits = await m.forward(batch, { logits: true });
    expect(withLogits.logits).toEqual(plain.logits);
    expect(withLogits.loss).toBe(plain.loss);
    expect(m.chunkedLoss).toBe(true);  // restored after the plain call
    const chunked = await m.forward(batch);
    expect(chunked.logits).toBeUndefined();
    expect(Math.abs(chunked.loss! - plain.loss!)).toBeLessThan(1e-5 * Math.abs(plain.loss!));
  });

  it("train.chunked_loss reaches the model (default off)", async () => {
    const dir = tempDir();
    const off = await loadModelForTraining(config("gpt2", dir, ["model.method=full"]));
    expect(off.chunkedLoss).toBe(false);
    const on = await loadModelForTraining(config("gpt2", dir, ["train.chunked_loss=true"]));
    expect(on.chunkedLoss).toBe(true);
    on.setChunkedLoss(false);
    expect(on.info().chunkedLoss).toBe(false);
    expect(() => on.setChunkedLoss(1 as unknown as boolean)).toThrow(/expected true/);
  });

  it("s2s-train train --chunked-loss sets train.chunked_loss", async () => {
    const parsed = async (...args: string[]) => {
      let got: Record<string, unknown> = {};
      await yargs(["train", ...args]).command({ ...trainCommand, handler: (a) => { got = a; } }).parse();
      return got["chunked-loss"];
    };
    expect(await parsed("--chunked-loss")).toBe(true);
    expect(await parsed()).toBeUndefined();
    const resolved = resolveTrainConfig({
      flags: { "train.chunked_loss": true },
      overrides: [`model.path=${path.join(modelsRoot, "gpt2")}`, "data.train_file=x.jsonl"],
    });
    expect(resolved.train.chunked_loss).toBe(true);
  });
});
