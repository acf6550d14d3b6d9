// `s2s-train eval` and the evaluation code it shares with the trainer: the row reader (JSON, JSONL,
// CSV, errors naming file:line and field), batched generation (sorted by length, predictions back
// in order, equal to one-at-a-time generation), scores equal to computeMetrics on the predictions,
// the files the report reads, an adapter merged before generating, prompts built as training
// builds them (templates, special tokens, chat templates), and the command line.
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Model } from "../src/models/model.js";
import { computeMetrics } from "../src/metrics/compute.js";
import { readRunFolder } from "../src/report/run-folder.js";
import { readEvalRows } from "../src/eval/read-eval-rows.js";
import { evaluateGeneration, type GenerationExample } from "../src/eval/evaluate-generation.js";
import { formatMetricsTable } from "../src/eval/eval-files.js";
import { runEval } from "../src/eval/run-eval.js";
import { generationExample } from "../src/eval/generation-metrics.js";
import { dataConfigSchema } from "../src/data/config.js";
import { dataContextForModel } from "../src/data/context.js";
import { loadData } from "../src/data/load-data.js";
import { train } from "../src/train/trainer.js";
import { config, dataset, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";

const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");

/** Rows whose words are the fixture tokenizers' (w<id>), with a reference that reverses the input. */
function rows(n: number): { input: string; target: string; kind: string }[] {
  return Array.from({ length: n }, (_, i) => {
    const words = Array.from({ length: 1 + (i % 4) }, (_, j) => `w${3 + ((i * 7 + j * 5) % 40)}`);
    return { input: words.join(" "), target: [...words].reverse().join(" "), kind: i % 3 === 0 ? "short" : "long" };
  });
}

function writeJsonl(file: string, data: unknown[]): string {
  writeFileSync(file, data.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return file;
}

describe("readEvalRows", () => {
  it("reads JSONL, a JSON array and CSV the same way", () => {
    const dir = tempDir();
    const data = [{ input: "a b", target: "b a", cat: "x" }, { input: "c", target: "c", cat: "y" }];
    writeJsonl(path.join(dir, "d.jsonl"), data);
    writeFileSync(path.join(dir, "d.json"), JSON.stringify(data, null, 2));
    writeFileSync(path.join(dir, "d.csv"), "input,target,cat\n\"a b\",b a,x\nc,c,y\n");
    const want = [{ input: "a b", reference: "b a", category: "x" }, { input: "c", reference: "c", category: "y" }];
    for (const f of ["d.jsonl", "d.json", "d.csv"]) {
      const got = readEvalRows(path.join(dir, f), { input: "input", target: "target", category: "cat" });
      expect(got.map(({ source: _, ...r }) => r), f).toEqual(want);
    }
    expect(readEvalRows(path.join(dir, "d.jsonl"), { input: "input", target: "target" })[1]!.source).toBe(`${path.join(dir, "d.jsonl")}:2`);
    expect(readEvalRows(path.join(dir, "d.csv"), { input: "input", target: "target" })[1]!.source).toBe(`${path.join(dir, "d.csv")}:3`);
  });

  it("takes several references as a JSON list, and other field names", () => {
    const file = writeJsonl(path.join(tempDir(), "q.jsonl"), [{ question: "who", answers: ["Ada", "Ada Lovelace"] }]);
    expect(readEvalRows(file, { input: "question", target: "answers" })[0]!.reference).toEqual(["Ada", "Ada Lovelace"]);
  });

  it("names the file, the line and the field of a bad row", () => {
    const dir = tempDir();
    const missing = writeJsonl(path.join(dir, "m.jsonl"), [{ input: "a", target: "b" }, { input: "c", answer: "d" }]);
    expect(() => readEvalRows(missing, { input: "input", target: "target" })).toThrow(`${missing}:2: missing field 'target' (target); the row has 'input', 'answer'`);
    const wrongType = writeJsonl(path.join(dir, "t.jsonl"), [{ input: { text: "a" }, target: "b" }]);
    expect(() => readEvalRows(wrongType, { input: "input", target: "target" })).toThrow(`${wrongType}:1: field 'input' (input) expected a string, got an object`);
    writeFileSync(path.join(dir, "bad.jsonl"), '{"input": "a", "target": "b"}\n{"input": \n');
    expect(() => readEvalRows(path.join(dir, "bad.jsonl"), { input: "input", target: "target" })).toThrow(`${path.join(dir, "bad.jsonl")}:2: not valid JSON`);
    writeFileSync(path.join(dir, "d.txt"), "x");
    expect(() => readEvalRows(path.join(dir, "d.txt"), { input: "input", target: "target" })).toThrow("expected .json, .jsonl or .csv");
    writeFileSync(path.join(dir, "empty.jsonl"), "\n");
    expect(() => readEvalRows(path.join(dir, "empty.jsonl"), { input: "input", target: "target" })).toThrow("has no examples");
    expect(() => readEvalRows(path.join(dir, "none.jsonl"), { input: "input", target: "target" })).toThrow("file not found");
  });
});

describe("evaluateGeneration", () => {
  for (const name of ["gpt2", "t5-relu-tied"]) {
    it(`${name}: batched predictions (sorted by length) equal one-at-a-time generation, in the examples' order`, async () => {
      const model = await Model.load(path.join(modelsRoot, name));
      const tok = model.tokenizer!;
      const examples: GenerationExample[] = rows(11).map((r) => ({
        promptIds: tok.encode(r.input).ids, input: r.input, reference: r.target, category: r.kind,
      }));
      const evaluation = await evaluateGeneration(model, examples, { metrics: "bleu,rouge,em,f1,chrf,soft_em", batchSize: 4, generation: { maxNewTokens: 5 } });
      const single: string[] = [];
      for (const e of examples) single.push((await model.generate([e.promptIds], { maxNewTokens: 5 })).sequences[0]!.text!.trim());
      expect(evaluation.predictions.map((p) => p.prediction)).toEqual(single);
      expect(new Set(single).size).toBeGreaterThan(3);  // the prompts lead to different outputs: the order is tested

      const want = computeMetrics("bleu,rouge,em,f1,chrf,soft_em", single, examples.map((e) => e.reference), { categories: examples.map((e) => e.category) });
      expect(evaluation.scores).toEqual(want.scores);
      expect(evaluation.byCategory).toEqual(want.byCategory);
      expect(evaluation.predictions.map((p) => p.scores)).toEqual(want.perExample);
      expect(evaluation.predictions[0]).toMatchObject({ input: examples[0]!.input, reference: examples[0]!.reference, category: "short" });
      expect(evaluation.generatedTokens).toBeGreaterThan(0);
    });
  }

  it("a prediction equal to its reference scores 100", async () => {
    // Greedy output of the fixture is deterministic: use it as the reference.
    const model = await Model.load(path.join(modelsRoot, "gpt2"));
    const prompt = model.tokenizer!.encode("w3 w4 w5").ids;
    const text = (await model.generate([prompt], { maxNewTokens: 4 })).sequences[0]!.text!.trim();
    const r = await evaluateGeneration(model, [{ promptIds: prompt, input: "w3 w4 w5", reference: ["nothing alike", text] }], {
      metrics: "em,f1,bleu,rougeL", batchSize: 1, generation: { maxNewTokens: 4 },
    });
    expect(r.scores).toMatchObject({ em: 100, f1: 100, rougeL: 100 });
    expect(r.scores.bleu).toBeCloseTo(100, 10);
    expect(r.byCategory).toEqual({});
  });

  it("refuses unknown metrics and several sequences per example", async () => {
    const model = await Model.load(path.join(modelsRoot, "gpt2"));
    const ex = [{ promptIds: [3, 4], input: "w3 w4", reference: "w4" }];
    await expect(evaluateGeneration(model, ex, { metrics: "bleu,meteor", batchSize: 1 })).rejects.toThrow("unknown metric 'meteor'");
    await expect(evaluateGeneration(model, ex, { metrics: "em", batchSize: 1, generation: { numBeams: 2, numReturnSequences: 2 } }))
      .rejects.toThrow("numReturnSequences must be 1");
  });
});

describe("runEval (s2s-train eval as a function)", () => {
  it("writes predictions.jsonl and metrics.json that the report reads, and a table", async () => {
    const dir = tempDir();
    const data = writeJsonl(path.join(dir, "test.jsonl"), rows(9));
    const out = path.join(dir, "out");
    const r = await runEval({
      model: path.join(modelsRoot, "qwen2"), data, metrics: "bleu,em,rougeL", categoryField: "kind", batchSize: 4,
      maxSamples: 7, generation: { maxNewTokens: 3 }, output: out,
    });
    const lines = readFileSync(path.join(out, "predictions.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(7);
    expect(Object.keys(lines[0]).sort()).toEqual(["category", "input", "prediction", "reference", "scores"]);
    const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8"));
    expect(metrics.count).toBe(7);
    expect(metrics.scores).toEqual(r.evaluation.scores);
    expect(Object.keys(metrics.byCategory).sort()).toEqual(["long", "short"]);
    expect(metrics.generation).toEqual({ max_new_tokens: 3 });
    // The scores in the files are the scores of the predictions in the files.
    const again = computeMetrics("bleu,em,rougeL", lines.map((l) => l.prediction), lines.map((l) => l.reference));
    expect(metrics.scores).toEqual(again.scores);

    const run = readRunFolder(out);
    expect(run.predictions!.total).toBe(7);
    expect(run.metrics!.scores).toEqual(metrics.scores);
    expect(r.table.split("\n")[0]).toMatch(/^\s+count\s+bleu\s+em\s+rougeL$/);
    expect(r.table.split("\n")[1]).toMatch(/^all\s+7\s/);
    expect(formatMetricsTable({ count: 2, scores: { em: 50 }, byCategory: {} })).toBe("     count     em\nall      2  50.00");
  });

  it("merges an adapter before generating: the predictions are those of base + adapter", async () => {
    // A short LoRA run on the reversal task gives a real adapter (final/).
    const dir = tempDir();
    const tok = (await Model.load(path.join(modelsRoot, "gpt2"))).tokenizer!;
    const examples = makeExamples("causal", 24, 5);
    const result = await train({
      config: config("gpt2", path.join(dir, "run"), [
        "train.max_steps=30", "train.lr=3e-2", "data.batch_size=8", "model.lora.r=8", "model.lora.dropout=0", "train.logging_steps=10",
      ]),
      data: dataset("causal", examples, []),
    });
    const data = writeJsonl(path.join(dir, "test.jsonl"), rows(6));
    const merged = await runEval({
      model: path.join(modelsRoot, "gpt2"), adapter: result.finalDir!, data, metrics: "em", generation: { maxNewTokens: 4 },
      output: path.join(dir, "eval"),
    });
    const base = await runEval({
      model: path.join(modelsRoot, "gpt2"), data, metrics: "em", generation: { maxNewTokens: 4 }, output: path.join(dir, "eval-base"),
    });
    // The same model unmerged (adapter applied at run time) generates the same tokens.
    const model = await Model.load(path.join(modelsRoot, "gpt2"), { keepFrozenInFileDtype: true });
    await model.loadAdapter(result.finalDir!);
    const unmerged = await model.generate(rows(6).map((r) => tok.encode(r.input).ids), { maxNewTokens: 4 });
    expect(merged.evaluation.predictions.map((p) => p.prediction)).toEqual(unmerged.sequences.map((s) => s.text!.trim()));
    expect(merged.evaluation.predictions.map((p) => p.prediction)).not.toEqual(base.evaluation.predictions.map((p) => p.prediction));
    expect(JSON.parse(readFileSync(path.join(dir, "eval", "metrics.json"), "utf8")).adapter).toBe(path.resolve(result.finalDir!));
  });

  it("refuses bad settings before loading the model", async () => {
    const dir = tempDir();
    const data = writeJsonl(path.join(dir, "t.jsonl"), rows(2));
    const base = { model: path.join(modelsRoot, "gpt2"), data, output: path.join(dir, "o") };
    await expect(runEval({ ...base, metrics: "bleu,foo" })).rejects.toThrow("unknown metric 'foo'");
    await expect(runEval({ ...base, batchSize: 0 })).rejects.toThrow("--batch-size: expected an integer >= 1, got 0");
    await expect(runEval({ ...base, adapter: dir })).rejects.toThrow("is not a PEFT adapter folder");
    await expect(runEval({ ...base, targetField: "answer" })).rejects.toThrow(`${data}:1: missing field 'answer' (target)`);
  });
});

describe("runEval prompts are the prompts training builds (src/data)", () => {
  // A copy of the qwen2 fixture with a chat template in its vocabulary's words.
  function chatModel(): string {
    const dir = path.join(tempDir(), "qwen2-chat");
    cpSync(path.join(modelsRoot, "qwen2"), dir, { recursive: true });
    const file = path.join(dir, "tokenizer_config.json");
    const template = "{% for m in messages %}<|im_start|>{{ {'system': 'w10', 'user': 'w11', 'assistant': 'w12'}[m.role] }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
      "{% if add_generation_prompt %}<|im_start|>w12\n{% endif %}";
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), chat_template: template }));
    return dir;
  }

  const cases = [
    { name: "llama-gqa (<s> before the prompt)", model: () => path.join(modelsRoot, "llama-gqa"), data: { prompt_template: "w30 {input} w31" } },
    { name: "t5-gated (</s> after the input)", model: () => path.join(modelsRoot, "t5-gated"), data: { prompt_template: "w30 {input}" } },
    { name: "qwen2 with a chat template", model: chatModel, data: { chat_template: true, system_prompt: "w40 w41" } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const dir = tempDir();
      const modelDir = c.model();
      const file = writeJsonl(path.join(dir, "test.jsonl"), rows(6));
      const ctx = dataContextForModel(modelDir, dir);
      const prepared = await loadData(dataConfigSchema.parse({ train_file: file, valid_ratio: 0, ...c.data }), ctx);
      const model = await Model.load(modelDir);
      const want = await evaluateGeneration(model, prepared.train.map((e) => generationExample(e, prepared.kind)), {
        metrics: "em,bleu", batchSize: 3, generation: { maxNewTokens: 4 },
      });
      const got = await runEval({
        model: modelDir, data: file, metrics: "em,bleu", batchSize: 2, generation: { maxNewTokens: 4 }, output: path.join(dir, "out"),
        ...(c.data.prompt_template ? { promptTemplate: c.data.prompt_template } : {}),
        ...(c.data.chat_template ? { chatTemplate: true, systemPrompt: c.data.system_prompt } : {}),
      });
      expect(got.evaluation.predictions.map((p) => p.prediction)).toEqual(want.predictions.map((p) => p.prediction));
      expect(new Set(want.predictions.map((p) => p.prediction)).size).toBeGreaterThan(1);
      expect(got.evaluation.scores).toEqual(want.scores);
    });
  }

  it("cuts prompts too long for the model as training cuts them, and counts them (GPT-2: n_positions 64)", async () => {
    const dir = tempDir();
    const long = Array.from({ length: 90 }, (_, j) => `w${3 + (j % 40)}`).join(" ");
    const file = writeJsonl(path.join(dir, "t.jsonl"), [{ input: long, target: "w3" }, ...rows(2)]);
    const got = await runEval({ model: path.join(modelsRoot, "gpt2"), data: file, metrics: "em", generation: { maxNewTokens: 4 }, output: path.join(dir, "o") });
    expect(got.maxInputLength).toBe(60);
    expect(got.truncatedInputs).toBe(1);
    const metrics = JSON.parse(readFileSync(path.join(dir, "o", "metrics.json"), "utf8"));
    expect(metrics).toMatchObject({ max_input_length: 60, truncated_inputs: 1 });
    // The prediction is the one generated from the prompt's first 60 tokens.
    const model = await Model.load(path.join(modelsRoot, "gpt2"));
    const ids = model.tokenizer!.encode(long, { add_special_tokens: false }).ids.slice(0, 60);
    const want = await model.generate([ids], { maxNewTokens: 4 });
    expect(got.evaluation.predictions[0]!.prediction).toBe(want.sequences[0]!.text!.trim());

    // Seq2seq keeps the closing </s> when it cuts; an explicit limit applies to any model.
    const t5 = await runEval({ model: path.join(modelsRoot, "t5-gated"), data: file, metrics: "em", maxInputLength: 8, generation: { maxNewTokens: 2 }, output: path.join(dir, "t5") });
    expect(t5.truncatedInputs).toBe(1);
    await expect(runEval({ model: path.join(modelsRoot, "gpt2"), data: file, generation: { maxNewTokens: 64 }, output: path.join(dir, "x") }))
      .rejects.toThrow("max_new_tokens 64 leaves no room for a prompt in the model's 64 positions (n_positions)");
    await expect(runEval({ model: path.join(modelsRoot, "gpt2"), data: file, maxInputLength: 0, output: path.join(dir, "x") }))
      .rejects.toThrow("--max-input-length: expected an integer >= 1, got 0");
  });

  it("refuses --chat-template for a model without one or a seq2seq model, and --system-prompt alone", async () => {
    const dir = tempDir();
    const data = writeJsonl(path.join(dir, "t.jsonl"), rows(2));
    const o = { data, output: path.join(dir, "o") };
    await expect(runEval({ ...o, model: path.join(modelsRoot, "gpt2"), chatTemplate: true })).rejects.toThrow("--chat-template: the model has no chat_template");
    await expect(runEval({ ...o, model: path.join(modelsRoot, "gpt2"), systemPrompt: "x" })).rejects.toThrow("--system-prompt is used with --chat-template only");
    await expect(runEval({ ...o, model: path.join(modelsRoot, "gpt2"), promptTemplate: "{question}" })).rejects.toThrow(`${data}:1: missing field 'question'`);
  });
});

describe("s2s-train eval (command line)", () => {
  it("prints the table and writes the files", () => {
    const dir = tempDir();
    const data = writeJsonl(path.join(dir, "test.jsonl"), rows(5));
    const out = path.join(dir, "out");
    const r = spawnSync(process.execPath, [
      cli, "eval", "--model", path.join(modelsRoot, "t5-gated"), "--data", data, "--metrics", "em,f1", "--category-field", "kind",
      "--max-new-tokens", "3", "--num-beams", "2", "--batch-size", "2", "--output", out,
    ], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\s+count\s+em\s+f1\nall\s+5\s+\d+\.\d\d\s+\d+\.\d\d\nlong\s+3 .*\nshort\s+2 /);
    expect(r.stdout).toContain(`wrote ${path.join(out, "predictions.jsonl")} and ${path.join(out, "metrics.json")}`);
    expect(JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8")).generation).toEqual({ max_new_tokens: 3, num_beams: 2 });
  });

  it("names the flag of a bad generation option", () => {
    const dir = tempDir();
    const data = writeJsonl(path.join(dir, "test.jsonl"), rows(2));
    const r = spawnSync(process.execPath, [cli, "eval", "--model", path.join(modelsRoot, "gpt2"), "--data", data, "--top-p", "2"], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("--top-p: ");
  });
});
