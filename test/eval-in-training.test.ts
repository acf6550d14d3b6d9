// Generation metrics inside train(): train.eval_metrics turns on the hook (generationMetricsFor),
// valid.csv gets one column per metric, the run folder gets the latest evaluation's
// predictions.jsonl and metrics.json, the scores are those of the model at that step (checked by
// evaluating the saved checkpoint independently), and the config refuses what cannot work.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Model } from "../src/models/model.js";
import type { Example, TaskKind } from "../src/data/types.js";
import { evaluateGeneration } from "../src/eval/evaluate-generation.js";
import { generationExample, generationMetricsFor } from "../src/eval/generation-metrics.js";
import { readTrainerState } from "../src/train/trainer-state.js";
import { train } from "../src/train/trainer.js";
import { config, dataset, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";

/** makeExamples with texts in the fixture tokenizers' words (w<id>), as data preparation would give. */
function examplesWithText(kind: TaskKind, n: number, seed: number): Example[] {
  return makeExamples(kind, n, seed).map((e) => {
    const prompt = kind === "causal" ? e.inputIds.subarray(0, e.promptLength) : e.inputIds.subarray(0, -1);
    const words = Array.from(prompt, (id) => `w${id}`);
    return { ...e, text: { input: words.join(" "), target: [...words].reverse().join(" ") } };
  });
}

function readCsv(file: string): { header: string[]; rows: Record<string, number>[] } {
  const [head, ...lines] = readFileSync(file, "utf8").trim().split("\n");
  const header = head!.split(",");
  return { header, rows: lines.map((l) => Object.fromEntries(l.split(",").map((c, i) => [header[i]!, Number(c)]))) };
}

describe("generation metrics during training", () => {
  for (const [model, kind] of [["gpt2", "causal"], ["t5-gated", "seq2seq"]] as const) {
    it(`${model}: valid.csv gets the metric columns, equal to evaluating the checkpoint`, async () => {
      const dir = tempDir();
      const valid = examplesWithText(kind, 9, 2);
      const cfg = config(model, dir, [
        "train.max_steps=6", "train.eval_steps=3", "train.save_steps=3", "train.lr=2e-2", "data.batch_size=4",
        "train.eval_metrics=[em, bleu, rougeL]", "train.max_eval_samples=5", "train.eval_generation.max_new_tokens=5",
        "train.metric_for_best_model=rougeL", "model.lora.dropout=0",
      ]);
      const result = await train({ config: cfg, data: dataset(kind, examplesWithText(kind, 24, 1), valid) });

      const csv = readCsv(path.join(dir, "logs", "valid.csv"));
      expect(csv.header).toEqual(["step", "epoch", "eval_loss", "perplexity", "em", "bleu", "rougeL"]);
      expect(csv.rows.map((r) => r.step)).toEqual([3, 6]);
      for (const r of csv.rows) for (const k of ["em", "bleu", "rougeL"]) expect(Number.isFinite(r[k]), k).toBe(true);
      expect(csv.rows[0]!.rougeL).toBeGreaterThan(0);  // some overlap, so the comparison below compares something

      // The latest evaluation's files, for the report.
      const predictions = readFileSync(path.join(dir, "predictions.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(predictions.map((p) => p.input)).toEqual(valid.slice(0, 5).map((e) => e.text.input));
      const metrics = JSON.parse(readFileSync(path.join(dir, "metrics.json"), "utf8"));
      expect(metrics).toMatchObject({ count: 5, step: 6, max_eval_samples: 5, generation: { max_new_tokens: 5, seed: 42 } });

      // Evaluating the step-3 checkpoint on its own gives the step-3 row.
      const base = await Model.load(path.join(modelsRoot, model), { keepFrozenInFileDtype: true });
      await base.loadAdapter(path.join(dir, "checkpoints", "checkpoint-3"));
      const again = await evaluateGeneration(base, valid.slice(0, 5).map((e) => generationExample(e, kind)), {
        metrics: "em,bleu,rougeL", batchSize: 2, generation: { maxNewTokens: 5 },
      });
      for (const k of ["em", "bleu", "rougeL"] as const) expect(csv.rows[0]![k]).toBeCloseTo(again.scores[k]!, 9);

      // metric_for_best_model can be a generation metric.
      const state = readTrainerState(path.join(result.lastCheckpoint!, "trainer_state.json"));
      expect(state.best_metric).toBe(Math.max(...csv.rows.map((r) => r.rougeL!)));
    });
  }

  it("is off without train.eval_metrics, and an explicit hook wins over it", async () => {
    expect(generationMetricsFor(config("gpt2", tempDir()))).toBeUndefined();
    const dir = tempDir();
    await train({
      config: config("gpt2", dir, ["train.max_steps=2", "train.eval_steps=2", "train.eval_metrics=[em]"]),
      data: dataset("causal", examplesWithText("causal", 8, 1), examplesWithText("causal", 3, 2)),
      generationMetrics: async () => ({ em: 12.5 }),
    });
    expect(readCsv(path.join(dir, "logs", "valid.csv")).rows[0]!.em).toBe(12.5);
  });

  it("the config refuses unknown metric names and a best-model metric that is not computed", () => {
    expect(() => config("gpt2", tempDir(), ["train.eval_metrics=[bleu, meteor]"])).toThrow(/train\.eval_metrics.*unknown metric 'meteor'/);
    expect(() => config("gpt2", tempDir(), ["train.eval_metrics=[em]", "train.metric_for_best_model=rougeL"]))
      .toThrow(/train\.metric_for_best_model.*"rougeL" is not computed: expected eval_loss, perplexity or one of train\.eval_metrics \(em\)/);
    expect(() => config("gpt2", tempDir(), ["train.eval_metrics=[rouge]", "train.metric_for_best_model=eval_rougeL"])).not.toThrow();
  });
});
