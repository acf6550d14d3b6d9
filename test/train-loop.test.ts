// The training loop on the tiny fixture models: loss masking, accumulation normalised over all
// counted tokens, evaluation, early stopping, checkpoint rotation that keeps the best, the best
// model at the end, the files and CSV columns a run leaves, and the stop on a non-finite loss.
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Model } from "../src/models/model.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { readTrainerState } from "../src/train/trainer-state.js";
import { NonFiniteLossError, train, type EvaluationEvent, type ProgressEvent } from "../src/train/trainer.js";
import type { GenerationMetrics } from "../src/train/evaluate.js";
import type { Example } from "../src/data/types.js";
import { collateFor, config, dataset, inOrder, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";
import { maxDiff } from "./helpers.js";

function weights(file: string): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(readSafetensors(file).tensors)) {
    if (t.dtype === "F32") out[name] = Float32Array.from(t.data);
  }
  return out;
}

function maxWeightDiff(a: Record<string, Float32Array>, b: Record<string, Float32Array>): number {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  return Math.max(...Object.keys(a).map((k) => maxDiff(a[k]!, b[k]!)));
}

/** A generation-metrics hook that returns a scripted score per evaluation. */
function scripted(name: string, values: number[]): GenerationMetrics {
  let i = 0;
  return async () => ({ [name]: values[i++] ?? 0 });
}

describe("loss masking through the loop", () => {
  it("the logged loss is the mean over the completion tokens only", async () => {
    const ex = makeExamples("causal", 4, 11);
    const progress: ProgressEvent[] = [];
    await train({
      config: config("gpt2", tempDir(), ["model.method=full", "train.max_steps=1", "data.batch_size=4", "train.lr=1e-3"]),
      data: dataset("causal", ex, [], inOrder), onProgress: (p) => progress.push(p),
    });
    const completionTokens = ex.reduce((n, e) => n + e.labels.filter((l) => l !== -100).length, 0);
    expect(progress[0]!.countedTokens).toBe(completionTokens);
    const base = await Model.load(path.join(modelsRoot, "gpt2"));
    const batch = collateFor("causal")(ex);
    const masked = await base.forward(batch);
    expect(Math.abs(progress[0]!.loss! - masked.loss!)).toBeLessThan(1e-6);
    // Taking the loss on the prompt too gives a different number: the mask is what is measured.
    const unmasked = await base.forward({ ...batch, labels: batch.inputIds.map((id, i) => (batch.attentionMask![i] ? id : -100)) });
    expect(Math.abs(unmasked.loss! - masked.loss!)).toBeGreaterThan(1e-2);
  });

  it("tokens after the completion with label -100 change nothing", async () => {
    const ex = makeExamples("causal", 8, 12);
    const padded: Example[] = ex.map((e) => ({
      ...e,
      inputIds: Int32Array.from([...e.inputIds, 50, 51, 52]),
      labels: Int32Array.from([...e.labels, -100, -100, -100]),
    }));
    const run = async (examples: Example[]) => {
      const dir = tempDir();
      const losses: number[] = [];
      await train({
        config: config("gpt2", dir, ["model.method=full", "train.max_steps=4", "data.batch_size=4", "train.lr=1e-2"]),
        data: dataset("causal", examples, [], inOrder), onProgress: (p) => losses.push(p.loss!),
      });
      return { losses, w: weights(path.join(dir, "final/model.safetensors")) };
    };
    const a = await run(ex);
    const b = await run(padded);
    expect(maxDiff(a.losses, b.losses)).toBeLessThan(1e-5);
    expect(maxWeightDiff(a.w, b.w)).toBeLessThan(1e-5);
  });
});

describe("gradient accumulation", () => {
  // AdamW's eps is raised to 1e-3 here: with 1e-8, a gradient entry that is ~0 in exact arithmetic
  // comes out as +-tiny in either run and AdamW turns its sign into a full +-lr step, which
  // hides the comparison; with 1e-3 the update follows the gradient's value.
  it("batch 8 equals 4 x 2 accumulated (the loss normalised over all counted tokens of the step)", async () => {
    const ex = makeExamples("causal", 16, 13);
    const run = async (overrides: string[]) => {
      const dir = tempDir();
      const progress: ProgressEvent[] = [];
      const r = await train({
        config: config("gpt2", dir, ["model.method=full", "train.epochs=2", "train.lr=1e-2", "train.weight_decay=0.01", "train.eps=1e-3", ...overrides]),
        data: dataset("causal", ex, [], inOrder), onProgress: (p) => progress.push(p),
      });
      return { r, progress, w: weights(path.join(dir, "final/model.safetensors")) };
    };
    const one = await run(["data.batch_size=8"]);
    const acc = await run(["data.batch_size=4", "train.gradient_accumulation_steps=2"]);
    expect(one.r.globalStep).toBe(4);
    expect(acc.r.globalStep).toBe(4);
    expect(acc.progress.map((p) => p.countedTokens)).toEqual(one.progress.map((p) => p.countedTokens));
    expect(maxDiff(acc.progress.map((p) => p.loss!), one.progress.map((p) => p.loss!))).toBeLessThan(1e-5);
    expect(maxDiff(acc.progress.map((p) => p.gradNorm), one.progress.map((p) => p.gradNorm))).toBeLessThan(1e-4);
    expect(maxWeightDiff(acc.w, one.w)).toBeLessThan(1e-5);

    // The micro-batches count different numbers of tokens, so a mean of their means would differ.
    const collate = collateFor("causal");
    const counts = [ex.slice(0, 4), ex.slice(4, 8)].map((b) => b.reduce((n, e) => n + e.labels.filter((l) => l !== -100).length, 0));
    expect(counts[0]).not.toBe(counts[1]);
    const base = await Model.load(path.join(modelsRoot, "gpt2"));
    const first = (await base.forward(collate(ex.slice(0, 4)))).loss!;
    const second = (await base.forward(collate(ex.slice(4, 8)))).loss!;
    expect(Math.abs((first + second) / 2 - one.progress[0]!.loss!)).toBeGreaterThan(1e-4);
  });
});

describe("evaluation and early stopping", () => {
  it("eval_loss is the validation loss summed over every counted token, divided once", async () => {
    const ex = makeExamples("seq2seq", 14, 14);
    const evals: EvaluationEvent[] = [];
    await train({
      config: config("t5-relu-tied", tempDir(), ["model.method=full", "train.max_steps=1", "train.lr=0", "data.batch_size=4", "train.eval_batch_size=3"]),
      data: dataset("seq2seq", ex.slice(0, 4), ex.slice(4), inOrder), onEvaluation: (e) => evals.push(e),
    });
    const base = await Model.load(path.join(modelsRoot, "t5-relu-tied"));
    let sum = 0;
    let count = 0;
    for (const e of ex.slice(4)) {
      const r = await base.forward(collateFor("seq2seq")([e]), { reduction: "sum" });
      sum += r.loss!;
      count += r.count;
    }
    expect(evals).toHaveLength(1);
    expect(Math.abs(evals[0]!.eval_loss - sum / count)).toBeLessThan(1e-5);
    expect(evals[0]!.perplexity).toBeCloseTo(Math.exp(evals[0]!.eval_loss), 10);
  });

  it("stops after `patience` evaluations without improvement and saves where it stopped", async () => {
    const ex = makeExamples("causal", 12, 15);
    const dir = tempDir();
    const evals: EvaluationEvent[] = [];
    // lr 0: the model never changes, so no evaluation improves on the first.
    const r = await train({
      config: config("gpt2", dir, ["train.lr=0", "train.max_steps=20", "data.batch_size=4", "train.eval_steps=1", "train.save_steps=5",
                                   "train.early_stopping.patience=2"]),
      data: dataset("causal", ex.slice(0, 8), ex.slice(8)), onEvaluation: (e) => evals.push(e),
    });
    expect(r.status).toBe("early_stopped");
    expect(r.globalStep).toBe(3);
    expect(evals.map((e) => e.isBest)).toEqual([true, false, false]);
    expect(existsSync(path.join(dir, "checkpoints/checkpoint-3"))).toBe(true);
    expect(r.finalDir).toBe(path.join(dir, "final"));
    expect(readTrainerState(path.join(dir, "checkpoints/checkpoint-3/trainer_state.json")).early_stopping_patience_counter).toBe(2);
  });

  it("an improvement within the threshold does not count; greater_is_better for a generation metric", async () => {
    const ex = makeExamples("causal", 12, 16);
    const run = async (threshold: number) => train({
      config: config("gpt2", tempDir(), ["train.lr=1e-3", "train.max_steps=6", "data.batch_size=4", "train.eval_steps=1",
                                         "train.metric_for_best_model=exact_match", "train.early_stopping.patience=2",
                                         `train.early_stopping.threshold=${threshold}`]),
      data: dataset("causal", ex.slice(0, 8), ex.slice(8)),
      generationMetrics: scripted("exact_match", [0.1, 0.15, 0.18, 0.5, 0.6, 0.7]),
    });
    const strict = await run(0.1);
    expect(strict.status).toBe("early_stopped");
    expect(strict.globalStep).toBe(3);
    expect(strict.bestMetric).toBe(0.18);
    const loose = await run(0);
    expect(loose.status).toBe("completed");
    expect(loose.globalStep).toBe(6);
  });
});

describe("checkpoints", () => {
  it("save_total_limit keeps the best checkpoint; load_best_model_at_end puts it in final/", async () => {
    const ex = makeExamples("causal", 12, 17);
    const dir = tempDir();
    const checkpoints: string[][] = [];
    const r = await train({
      config: config("gpt2", dir, ["train.lr=1e-2", "train.max_steps=5", "data.batch_size=4", "train.eval_steps=1", "train.save_steps=1",
                                   "train.save_total_limit=2", "train.load_best_model_at_end=true", "train.metric_for_best_model=exact_match"]),
      data: dataset("causal", ex.slice(0, 8), ex.slice(8)),
      generationMetrics: scripted("exact_match", [0.5, 0.9, 0.3, 0.2, 0.1]),
      onCheckpoint: (c) => checkpoints.push(c.deleted.map((d) => path.basename(d))),
    });
    expect(readdirSync(path.join(dir, "checkpoints")).sort()).toEqual(["checkpoint-2", "checkpoint-5"]);
    expect(checkpoints).toEqual([[], [], ["checkpoint-1"], ["checkpoint-3"], ["checkpoint-4"]]);
    expect(r.bestCheckpoint).toBe(path.join(dir, "checkpoints/checkpoint-2"));
    expect(r.bestMetric).toBe(0.9);
    const best = readFileSync(path.join(dir, "checkpoints/checkpoint-2/adapter_model.safetensors"));
    expect(readFileSync(path.join(dir, "final/adapter_model.safetensors")).equals(best)).toBe(true);
    expect(readFileSync(path.join(dir, "checkpoints/checkpoint-5/adapter_model.safetensors")).equals(best)).toBe(false);
    expect(readdirSync(path.join(dir, "final")).sort()).toEqual(
      ["adapter_config.json", "adapter_model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]);
    // valid.csv carries the generation metric as a further column.
    const valid = readFileSync(path.join(dir, "logs/valid.csv"), "utf8").trim().split("\n");
    expect(valid[0]).toBe("step,epoch,eval_loss,perplexity,exact_match");
    expect(valid.slice(1).map((l) => l.split(",")[4])).toEqual(["0.5", "0.9", "0.3", "0.2", "0.1"]);
  });

  it("with limit 1 the best and the newest both stay", async () => {
    const ex = makeExamples("causal", 12, 18);
    const dir = tempDir();
    await train({
      config: config("gpt2", dir, ["train.max_steps=4", "data.batch_size=4", "train.eval_steps=1", "train.save_steps=1", "train.save_total_limit=1",
                                   "train.metric_for_best_model=exact_match"]),
      data: dataset("causal", ex.slice(0, 8), ex.slice(8)), generationMetrics: scripted("exact_match", [0.2, 0.7, 0.1, 0.3]),
    });
    expect(readdirSync(path.join(dir, "checkpoints")).sort()).toEqual(["checkpoint-2", "checkpoint-4"]);
  });

  it("a run leaves config.yaml, checkpoints, logs with the report's columns, and final/", async () => {
    const ex = makeExamples("seq2seq", 10, 19);
    const dir = tempDir();
    await train({
      config: config("t5-relu-tied", dir, ["model.method=full", "train.epochs=2", "data.batch_size=4", "train.logging_steps=2"]),
      data: dataset("seq2seq", ex.slice(0, 8), ex.slice(8)),
    });
    expect(readdirSync(dir).sort()).toEqual(["checkpoints", "config.yaml", "final", "logs", "report.html"]);
    // No evaluation or save steps set: both happen at each epoch's end (2 steps per epoch).
    expect(readdirSync(path.join(dir, "checkpoints")).sort()).toEqual(["checkpoint-2", "checkpoint-4"]);
    expect(readdirSync(path.join(dir, "checkpoints/checkpoint-4")).sort()).toEqual(
      ["config.json", "generation_config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json", "tokenizer_config.json", "trainer_state.json"]);
    const trainCsv = readFileSync(path.join(dir, "logs/train.csv"), "utf8").trim().split("\n");
    expect(trainCsv[0]).toBe("step,epoch,loss,learning_rate,grad_norm,tokens_per_second,elapsed_seconds");
    expect(trainCsv.slice(1).map((l) => l.split(",").slice(0, 2).join(","))).toEqual(["2,1", "4,2"]);
    const validCsv = readFileSync(path.join(dir, "logs/valid.csv"), "utf8").trim().split("\n");
    expect(validCsv[0]).toBe("step,epoch,eval_loss,perplexity");
    expect(validCsv).toHaveLength(3);
    const log = readFileSync(path.join(dir, "logs/run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(log[0]).toMatchObject({ level: 30, msg: "training", total_steps: 4 });
    expect(log.filter((l) => l.msg === "step").map((l) => l.step)).toEqual([1, 2, 3, 4]);
    // Each log line reports the most memory the model held in its window; no GPU, no GPU fields.
    const lines = log.filter((l) => /^step \d+\/4$/.test(l.msg));
    expect(lines.map((l) => l.msg)).toEqual(["step 2/4", "step 4/4"]);
    for (const l of lines) {
      expect(l.peak_memory_mb).toBeGreaterThan(0);
      expect(l).not.toHaveProperty("gpu_memory_used_mb");
    }
    // final/ is a model folder that loads.
    const final = await Model.load(path.join(dir, "final"));
    expect(final.config.model_type).toBe("t5");
  });

  it("refuses to start over an earlier run unless told to overwrite it", async () => {
    const ex = makeExamples("causal", 8, 20);
    const dir = tempDir();
    const c = config("gpt2", dir, ["train.max_steps=1", "data.batch_size=4"]);
    await train({ config: c, data: dataset("causal", ex, []) });
    await expect(train({ config: c, data: dataset("causal", ex, []) })).rejects.toThrow(/already holds a run .*--resume.*--overwrite/);
    const r = await train({ config: c, data: dataset("causal", ex, []), overwrite: true });
    expect(r.status).toBe("completed");
    await expect(train({ config: c, data: dataset("causal", [], []), overwrite: true })).rejects.toThrow(/no training examples/);
  });
});

describe("a non-finite loss", () => {
  it("stops the run with a clear message and keeps the last good checkpoint", async () => {
    const ex = makeExamples("causal", 12, 21);
    const dir = tempDir();
    const c = config("gpt2", dir, ["model.method=full", "train.lr=1e30", "train.warmup_steps=2", "train.scheduler=constant",
                                   "train.max_steps=10", "data.batch_size=4", "train.save_steps=1"]);
    const err = await train({ config: c, data: dataset("causal", ex, []) }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    const e = err as NonFiniteLossError;
    // Step 1 has learning rate 0 (warmup), step 2 blows the weights up, step 3's loss is NaN.
    expect(e.step).toBe(3);
    expect(e.code).toBe("S2S_NONFINITE_LOSS");
    expect(e.message).toMatch(/^the loss is NaN at step 3; the run stopped without saving this step\. The last good checkpoint is .*checkpoint-2/);
    expect(e.lastCheckpoint).toBe(path.join(dir, "checkpoints/checkpoint-2"));
    expect(readdirSync(path.join(dir, "checkpoints")).sort()).toEqual(["checkpoint-1", "checkpoint-2"]);
    expect(readTrainerState(path.join(dir, "checkpoints/checkpoint-2/trainer_state.json")).global_step).toBe(2);
    expect(existsSync(path.join(dir, "final"))).toBe(false);
    // The report shows the curves up to the divergence, headed by the reason.
    const report = readFileSync(path.join(dir, "report.html"), "utf8");
    expect(report).toContain(`<section class="stopped" role="alert"><h2>The run stopped</h2><p>the loss is NaN at step 3;`);
    expect(report).toContain('data-chart="loss"');
    const log = readFileSync(path.join(dir, "logs/run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(log.at(-1)).toMatchObject({ level: 50, code: "S2S_NONFINITE_LOSS" });
  });
});

describe("the library", () => {
  it("train() from the package root takes a config as plain sections and validates it", async () => {
    const { train: trainFromIndex, ConfigError } = await import("../src/index.js");
    const ex = makeExamples("causal", 8, 22);
    const dir = tempDir();
    const r = await trainFromIndex({
      config: { model: { path: path.join(modelsRoot, "gpt2"), method: "full" }, data: { train_file: "(in memory)", batch_size: 4 },
                train: { max_steps: 2 }, output: { dir } },
      data: dataset("causal", ex, []),
    });
    expect(r).toMatchObject({ status: "completed", globalStep: 2, finalDir: path.join(dir, "final") });
    await expect(trainFromIndex({
      config: { model: { path: "m" }, data: { train_file: "d" }, train: { lr: -1 } } as never,
      data: dataset("causal", ex, []),
    })).rejects.toThrow(ConfigError);
  });
});
