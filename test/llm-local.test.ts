// The local LLM engine (llm.local): chat messages through the folder's chat template (Jinja,
// tokenized without added special tokens) or as plain text, greedy at temperature 0, seeded
// sampling, stop strings that end generation early, one request at a time, an adapter merged in,
// and curation answering with it end to end.
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Model } from "../src/models/model.js";
import { loadLocalBackend, LocalModelBackend, ModelGenerator } from "../src/llm/local-backend.js";
import { completeStructured, jsonSchemaOf } from "../src/llm/structured.js";
import { relationSchema } from "../src/synth/relations.js";
import { jsonTokenizerModel } from "./constrain-helpers.js";
import { readChatTemplate, renderChat } from "../src/data/chat-template.js";
import { loadSynthConfig } from "../src/synth/config.js";
import { runSynth } from "../src/synth/run-synth.js";
import { splitSlices } from "../src/synth/curate.js";
import { train } from "../src/train/trainer.js";
import { config, dataset, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";

// ChatML as Qwen2 writes it, with the role names spelled in the fixture vocabulary's words.
const CHATML = "{% for m in messages %}<|im_start|>{{ {'system': 'w10', 'user': 'w11', 'assistant': 'w12'}[m.role] }}\n" +
  "{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>w12\n{% endif %}";

/** A copy of the qwen2 fixture whose tokenizer_config.json has a chat template. */
function chatModel(template: unknown = CHATML): string {
  const dir = path.join(tempDir(), "qwen2-chat");
  cpSync(path.join(modelsRoot, "qwen2"), dir, { recursive: true });
  const file = path.join(dir, "tokenizer_config.json");
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), chat_template: template }));
  return dir;
}

describe("chat templates", () => {
  it("renders tokenizer_config.json's template with the special-token strings", () => {
    const dir = chatModel("{{ bos_token }}|{{ eos_token }}|{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}{{ add_generation_prompt }}");
    const chat = readChatTemplate(dir)!;
    expect(chat.variables).toEqual({ eos_token: "<|endoftext|>", pad_token: "<|endoftext|>" });  // bos_token and unk_token are null there
    expect(renderChat(chat, [{ role: "user", content: "hi" }], true, "test")).toBe("|<|endoftext|>|user=hi;true");
    expect(readChatTemplate(path.join(modelsRoot, "gpt2"))).toBeUndefined();
  });

  it("picks the \"default\" of named templates, and names the file of a broken one", () => {
    const named = chatModel([{ name: "tool_use", template: "T" }, { name: "default", template: "D" }]);
    expect(renderChat(readChatTemplate(named)!, [], false, "test")).toBe("D");
    const broken = chatModel("{% for m in messages %}");
    expect(() => readChatTemplate(broken)).toThrow(`${path.join(broken, "tokenizer_config.json")}: chat_template is not a template @huggingface/jinja can parse`);
  });
});

describe("the local engine", () => {
  it("applies the chat template, adds no special tokens of its own, and answers as model.generate does", async () => {
    const dir = chatModel();
    const backend = await loadLocalBackend(dir);
    const messages = [{ role: "system" as const, content: "w3 w4" }, { role: "user" as const, content: "w5 w6 w7" }];
    const r = await backend.complete({ messages, temperature: 0, maxTokens: 6 });

    const model = await Model.load(dir);
    const rendered = "<|im_start|>w10\nw3 w4<|im_end|>\n<|im_start|>w11\nw5 w6 w7<|im_end|>\n<|im_start|>w12\n";
    const ids = model.tokenizer!.encode(rendered, { add_special_tokens: false }).ids;
    expect(ids).toEqual([94, 10, 3, 4, 95, 94, 11, 5, 6, 7, 95, 94, 12]);
    const want = await model.generate([ids], { maxNewTokens: 6, doSample: false });
    expect(r.text).toBe(want.sequences[0]!.text);
    expect(r.usage).toEqual({ promptTokens: ids.length, completionTokens: want.sequences[0]!.tokenIds.length });
    expect(r.finishReason).toBe(want.sequences[0]!.finishReason === "eos" ? "stop" : "length");
    expect(r.text.length).toBeGreaterThan(0);
  });

  it("without a template the prompt is the messages' text; sampling is seeded", async () => {
    const model = await Model.load(path.join(modelsRoot, "llama-gqa"));
    const generator = new ModelGenerator(model);
    expect(generator.promptIds([{ role: "user", content: "w3 w4" }])).toEqual(model.tokenizer!.encode("w3 w4").ids);  // <s> added
    expect(generator.promptIds([{ role: "system", content: "w3" }, { role: "user", content: "w4" }])).toEqual(model.tokenizer!.encode("w3\n\nw4").ids);
    const sample = (seed: number) => generator.chat([{ role: "user", content: "w3 w4" }], { temperature: 1.5, seed, maxNewTokens: 8 });
    const [a, b, c] = [await sample(1), await sample(1), await sample(2)];
    expect(a.text).toBe(b.text);
    expect(c.text).not.toBe(a.text);
    const want = await model.generate(["w3 w4"], { doSample: true, temperature: 1.5, seed: 1, maxNewTokens: 8 });
    expect(a.text).toBe(want.sequences[0]!.text);
  });

  it("a stop string ends generation early and is cut from the text", async () => {
    const model = await Model.load(path.join(modelsRoot, "gpt2"));
    const generator = new ModelGenerator(model);
    const messages = [{ role: "user" as const, content: "w3 w4 w5" }];
    const full = await generator.chat(messages, { temperature: 0, maxNewTokens: 60 });
    const words = full.text.split(" ");
    const stopWord = words.find((w, i) => i >= 1 && w !== words[0])!;  // a word that first appears after the first
    expect(stopWord, full.text).toBeDefined();
    const cut = await generator.chat(messages, { temperature: 0, maxNewTokens: 60, stop: [`zzz`, ` ${stopWord}`] });
    expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(` ${stopWord}`)));
    expect(cut.finishReason).toBe("stop");
    // Stopped soon after the token that completed the stop string, not at the length limit: the
    // native side may be up to 16 queued steps (kTokenQueue) plus the steps in flight ahead.
    expect(cut.completionTokens).toBeGreaterThanOrEqual(words.indexOf(stopWord) + 1);
    expect(cut.completionTokens).toBeLessThanOrEqual(words.indexOf(stopWord) + 1 + 18);
    expect(full.completionTokens).toBe(60);
  });

  it("runs concurrent requests one after the other", async () => {
    const generator = new ModelGenerator(await Model.load(path.join(modelsRoot, "gpt2")));
    const ask = (content: string) => generator.chat([{ role: "user", content }], { temperature: 0, maxNewTokens: 5 });
    const together = await Promise.all([ask("w3"), ask("w4 w5"), ask("w6")]);
    expect(together.map((r) => r.text)).toEqual([(await ask("w3")).text, (await ask("w4 w5")).text, (await ask("w6")).text]);
  });

  it("an aborted request rejects with the signal's reason", async () => {
    const generator = new ModelGenerator(await Model.load(path.join(modelsRoot, "gpt2")));
    const controller = new AbortController();
    controller.abort(new Error("stop now"));
    await expect(generator.chat([{ role: "user", content: "w3" }], { signal: controller.signal })).rejects.toThrow("stop now");
  });
});

describe("the local engine with a JSON schema", () => {
  it("constrains decoding: the relation-extraction schema parses and validates with no repair, every seed", async () => {
    // llama-gqa: 128 positions, room for the keys spelled letter by letter.
    const backend = new LocalModelBackend(new ModelGenerator(await Model.load(jsonTokenizerModel("llama-gqa"))));
    let accepted = 0;
    for (let seed = 1; seed <= 12 && accepted < 2; seed++) {
      const request = { messages: [{ role: "user" as const, content: "a b" }], maxTokens: 110, temperature: 1.5, seed };
      const raw = await backend.complete({ ...request, jsonSchema: { name: "relations", schema: jsonSchemaOf(relationSchema) } });
      if (raw.finishReason === "length") continue; // random weights: some run out of tokens mid-string
      expect(relationSchema.safeParse(JSON.parse(raw.text)).success, raw.text).toBe(true);
      const r = await completeStructured(backend, request, { name: "relations", schema: relationSchema, repairRetries: 0 });
      expect(r.repairs).toEqual([]);
      expect(r.calls).toBe(1);
      accepted++;
    }
    expect(accepted).toBeGreaterThan(0);
  });

  it("falls back to free decoding, saying why, where the tokenizer or the schema does not allow constraining", async () => {
    const generator = new ModelGenerator(await Model.load(path.join(modelsRoot, "gpt2"))); // WordLevel tokenizer
    const g = await generator.chat([{ role: "user", content: "w5" }], { maxNewTokens: 4, temperature: 0, jsonSchema: { name: "x", schema: { type: "object" } } });
    expect(g.unconstrained).toMatch(/tokens are joined with spaces/);
    const json = new ModelGenerator(await Model.load(jsonTokenizerModel("gpt2")));
    const h = await json.chat([{ role: "user", content: "a" }], { maxNewTokens: 4, temperature: 0, jsonSchema: { name: "x", schema: { not: {} } } });
    expect(h.unconstrained).toMatch(/keyword "not" is not supported/);
    const k = await json.chat([{ role: "user", content: "a" }], { maxNewTokens: 4, temperature: 0, jsonSchema: { name: "x", schema: { type: "object" } } });
    expect(k.unconstrained).toBeUndefined();
    expect(k.text.startsWith("{") || k.text.startsWith(" {")).toBe(true);
  });
});

describe("curation answering with the local engine", () => {
  it("fine-tuned adapter + llm.local: kept when the model's answer holds the gold answer", async () => {
    const dir = tempDir();
    // A real adapter from a few LoRA steps, so the adapter path is exercised too.
    const run = await train({
      config: config("gpt2", path.join(dir, "run"), ["train.max_steps=3", "train.lr=1e-2", "data.batch_size=4"]),
      data: dataset("causal", makeExamples("causal", 8, 1), []),
    });
    const backend = await loadLocalBackend(path.join(modelsRoot, "gpt2"), run.finalDir!);
    // Gold answers: what the model says for the first input (kept), and a word it never says (dropped).
    const said = (await backend.complete({ messages: [{ role: "user", content: "w3 w4 w5" }], temperature: 0, maxTokens: 16 })).text;
    const rows = [
      { input: "w9 w10", target: "t", answer: "w91" },
      { input: "w3 w4 w5", target: "t", answer: said.trim().split(" ")[0]! },
      { input: "w11 w12", target: "t", answer: "w92" },
      { input: "w13", target: "t", answer: "w93" },
    ];
    const slice1 = splitSlices(rows, 0.25, 1).slice1;  // the split curation makes with these settings
    expect(slice1).toContain(rows[1]);
    writeFileSync(path.join(dir, "data.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const summary = await runSynth({
      task: "curate", out: path.join(dir, "synth"), progress: false, log: () => {},
      config: loadSynthConfig(undefined, {
        curate: {
          input: path.join(dir, "data.jsonl"), slice0_ratio: 0.25, seed: 1, k: 2, temperature: 0, max_tokens: 16,
          answer_with: { local: { model: path.join(modelsRoot, "gpt2"), adapter: run.finalDir! } },
        },
      }),
    });
    expect(summary.report.kept).toBe(1);
    expect(summary.report.rejected).toEqual({ never_answered: slice1.length - 1 });
  });

  it("without answer_with: fine-tunes the base model on slice 0 with the trainer, then answers with base + adapter", async () => {
    const dir = tempDir();
    // Rows in the fixture vocabulary, every chain ending in the same answer: learnable in a few steps.
    const rows = Array.from({ length: 8 }, (_, i) => ({ input: `w${3 + i} w${4 + i}`, target: `w${4 + i} w50`, answer: "w50" }));
    writeFileSync(path.join(dir, "data.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const options = {
      task: "curate" as const, out: path.join(dir, "synth"), progress: false as const, log: () => {},
      config: loadSynthConfig(undefined, {
        curate: {
          input: path.join(dir, "data.jsonl"), base_model: path.join(modelsRoot, "gpt2"), k: 1, temperature: 0, max_tokens: 4,
          train: { train: { max_steps: 12, lr: 3e-2, logging_steps: 4 }, data: { batch_size: 2 }, model: { lora: { r: 4 } } },
        },
      }),
    };
    const summary = await runSynth(options);
    const run = path.join(dir, "synth", "synth", "curate", "model");
    const state = JSON.parse(readFileSync(path.join(run, "checkpoints", "checkpoint-12", "trainer_state.json"), "utf8"));
    expect(state.global_step).toBe(12);
    expect(JSON.parse(readFileSync(path.join(run, "final", "adapter_config.json"), "utf8")).r).toBe(4);
    // Slice 0 trained as a whole: its rows, none held out.
    const slice0 = readFileSync(path.join(dir, "synth", "synth", "curate", "slice0.jsonl"), "utf8").trim().split("\n");
    expect(readFileSync(path.join(run, "logs", "run.jsonl"), "utf8")).toContain(`"train_examples":${slice0.length},"valid_examples":0`);
    expect(summary.report.kept + (summary.report.rejected.never_answered ?? 0)).toBe(rows.length - slice0.length);

    // Kept are exactly the slice-1 rows whose answer base + adapter (greedy) contains.
    const backend = await loadLocalBackend(path.join(modelsRoot, "gpt2"), path.join(run, "final"));
    const curated = readFileSync(path.join(dir, "synth", "synth", "curated.jsonl"), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l).input);
    const slice1 = rows.filter((r) => !slice0.some((l) => JSON.parse(l).input === r.input));
    const answered: string[] = [];
    for (const row of slice1) {
      const said = (await backend.complete({ messages: [{ role: "user", content: row.input }], temperature: 0, maxTokens: 4 })).text;
      if (` ${said} `.includes(" w50 ")) answered.push(row.input);
    }
    expect(curated.sort()).toEqual(answered.sort());
    expect(answered.length).toBeGreaterThan(0);

    // Settings that cannot be used are named.
    const bad = (train: Record<string, unknown>) => runSynth({
      ...options, out: path.join(dir, `bad-${Object.keys(train)[0]}`),
      config: loadSynthConfig(undefined, { curate: { ...options.config.curate, train } }),
    });
    await expect(bad({ lr: 1e-3 })).rejects.toThrow("curate.train.lr: expected the sections of a training config (model, data, train)");
    await expect(bad({ model: { path: "x" } })).rejects.toThrow("curate.train.model.path: set by curation");
    await expect(bad({ train: { lrr: 1 } })).rejects.toThrow(/curate\.train: .*train\.lrr.*did you mean train\.lr/);
    await expect(bad({ data: { chat_template: true } })).rejects.toThrow("curate.train.data.chat_template: the curation model is asked with plain prompts");
  });
});
