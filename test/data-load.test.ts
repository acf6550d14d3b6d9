// loadData: the three file formats, every kind of bad row (an error naming file:line, or skipped
// and counted), loss masking for causal and seq2seq examples, truncation counts, categories and
// chat templates.
import { describe, expect, it } from "vitest";
import path from "node:path";
import { DataError, dataContextForModel, loadData, type DataConfig } from "../src/index.js";
import { dataConfig, fixtures, modelFolderWithTokenizer, tempDir, writeFiles } from "./data-helpers.js";

const t5 = dataContextForModel(path.join(fixtures, "t5-relu-tied"), "/");
const llama = dataContextForModel(path.join(fixtures, "llama-gqa"), "/");
const gpt2 = dataContextForModel(path.join(fixtures, "gpt2"), "/");
const qwen2 = dataContextForModel(path.join(fixtures, "qwen2"), "/");

/** The fixture tokenizers are WordLevel over "w3".."w95": a word is its id. */
const ids = (a: Int32Array) => Array.from(a);

async function load(ctx: typeof t5, dir: string, config: Partial<Record<keyof DataConfig, unknown>>) {
  return loadData(dataConfig({ valid_ratio: 0, ...config }), { ...ctx, baseDir: dir });
}

async function loadError(ctx: typeof t5, dir: string, config: Partial<Record<keyof DataConfig, unknown>>): Promise<DataError> {
  try {
    await load(ctx, dir, config);
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error("expected loadData to fail");
}

describe("data formats", () => {
  const rows = [
    { question: "w3 w4", answer: "w5" },
    { question: "w6", answer: "w7 w8" },
    { question: "w9 w10 w11", answer: "w12" },
  ];
  const dir = tempDir();
  writeFiles(dir, {
    "rows.jsonl": rows.map((r) => JSON.stringify(r)).join("\n") + "\n",
    "rows.json": JSON.stringify(rows, null, 2),
    "rows.csv": "question,answer\n" + rows.map((r) => `"${r.question}",${r.answer}`).join("\n") + "\n",
    "rows.txt": rows.map((r) => JSON.stringify(r)).join("\n"),
  });
  const fields = { input_field: "question", target_field: "answer" };

  it("JSONL, JSON and CSV give the same examples, each naming its file:line", async () => {
    const jsonl = await load(t5, dir, { train_file: "rows.jsonl", ...fields });
    const json = await load(t5, dir, { train_file: "rows.json", ...fields });
    const csv = await load(t5, dir, { train_file: "rows.csv", ...fields, prompt_template: "{question}" });
    for (const data of [json, csv]) {
      expect(data.train.map((e) => ids(e.inputIds))).toEqual(jsonl.train.map((e) => ids(e.inputIds)));
      expect(data.train.map((e) => ids(e.labels))).toEqual(jsonl.train.map((e) => ids(e.labels)));
    }
    expect(jsonl.train.map((e) => e.source)).toEqual(["rows.jsonl:1", "rows.jsonl:2", "rows.jsonl:3"].map((s) => path.join(dir, s)));
    // Pretty-printed JSON: each object starts on its own line (after "[" on line 1).
    expect(json.train.map((e) => e.source.split(":").pop())).toEqual(["2", "6", "10"]);
    expect(csv.train.map((e) => e.source.split(":").pop())).toEqual(["2", "3", "4"]);
    expect(jsonl.train.map((e) => e.id)).toEqual([0, 1, 2]);
    expect(jsonl.train[0]!.text).toEqual({ input: "w3 w4", target: "w5" });
  });

  it("the prompt template fills {field} placeholders", async () => {
    const data = await load(t5, dir, { train_file: "rows.jsonl", ...fields, prompt_template: "w90 {question} {{w91}}" });
    expect(data.train[0]!.text.input).toBe("w90 w3 w4 {w91}");
  });

  it("an unknown extension needs data.format", async () => {
    const e = await loadError(t5, dir, { train_file: "rows.txt", ...fields });
    expect(e.message).toMatch(/rows\.txt: cannot tell the format from the extension '\.txt'.*data\.format/);
    const data = await load(t5, dir, { train_file: "rows.txt", format: "jsonl", ...fields });
    expect(data.train).toHaveLength(3);
  });

  it("a missing file is an error naming it", async () => {
    const e = await loadError(t5, dir, { train_file: "nope.jsonl" });
    expect(e.message).toMatch(/nope\.jsonl: file not found/);
  });
});

describe("bad rows", () => {
  const dir = tempDir();
  writeFiles(dir, {
    "bad.jsonl": [
      '{"input": "w3", "target": "w4"}',
      '{"input": "w3", "target": ',                 // 2: not JSON
      '["w3", "w4"]',                               // 3: not an object
      '{"input": "w3"}',                            // 4: no target
      '{"input": "w3", "target": null}',            // 5: null target
      '{"input": "w3", "target": "  "}',            // 6: empty target
      "",
      '{"input": "w5", "target": "w6"}',
    ].join("\n"),
    "template.jsonl": '{"input": "w3", "target": "w4", "context": "w5"}\n{"input": "w3", "target": "w4"}\n',
    "bad.csv": 'input,target\nw3,w4\nw5,w6,w7\n"w8",w9\n',
    "bad.json": '[\n  {"input": "w3", "target": "w4"},\n  42,\n  {"input": "w5", "target": "w6"}\n]\n',
    "broken.json": '[\n  {"input": "w3", "target": "w4"},\n  {"input": "w5" "target": "w6"}\n]\n',
    "object.json": '{"input": "w3", "target": "w4"}',
  });
  const at = (file: string, line: number) => `${path.join(dir, file)}:${line}`;

  it("with on_bad_row: skip, every bad row is skipped and reported with file:line and why", async () => {
    const data = await load(t5, dir, { train_file: "bad.jsonl", on_bad_row: "skip" });
    expect(data.train.map((e) => e.text.input)).toEqual(["w3", "w5"]);
    expect(data.train.map((e) => e.source)).toEqual([at("bad.jsonl", 1), at("bad.jsonl", 8)]);
    // ids count the bad rows too, so they are the rows' positions in the file
    expect(data.train.map((e) => e.id)).toEqual([0, 6]);
    const skipped = data.report.skipped;
    expect(skipped.map((s) => s.source)).toEqual([2, 3, 4, 5, 6].map((l) => at("bad.jsonl", l)));
    expect(skipped[0]!.reason).toMatch(/not valid JSON/);
    expect(skipped[1]!.reason).toBe("expected a JSON object, got an array");
    expect(skipped[2]!.reason).toMatch(/missing field 'target' \(target_field\); the row has 'input'/);
    expect(skipped[3]!.reason).toMatch(/field 'target' \(target_field\) expected a string, got null/);
    expect(skipped[4]!.reason).toMatch(/field 'target' \(target_field\) is empty/);
    expect(data.report).toMatchObject({ rows: 7, train: 2, valid: 0 });
  });

  it("every kind stops the run by default, at its own line", async () => {
    const lines = [
      '{"input": "w3", "target": ',
      '["w3", "w4"]',
      '{"input": "w3"}',
      '{"input": "w3", "target": null}',
      '{"input": "w3", "target": "  "}',
      '{"input": "w3", "target": "unknownword"}',
    ];
    const reasons = [/not valid JSON/, /expected a JSON object, got an array/, /missing field 'target'/, /expected a string, got null/, /is empty/, /has no id/];
    for (let i = 0; i < lines.length; i++) {
      writeFiles(dir, { "one.jsonl": `{"input": "w3", "target": "w4"}\n\n${lines[i]}\n` });
      // qwen2's tokenizer has no unknown token: a word outside its vocabulary has no id.
      const e = await loadError(i === lines.length - 1 ? qwen2 : t5, dir, { train_file: "one.jsonl" });
      expect(e.where).toBe(at("one.jsonl", 3));
      expect(e.reason).toMatch(reasons[i]!);
    }
  });

  it("a template field the row lacks names the row and the field", async () => {
    const e = await loadError(t5, dir, { train_file: "template.jsonl", prompt_template: "{input} {context}" });
    expect(e.where).toBe(at("template.jsonl", 2));
    expect(e.reason).toMatch(/missing field 'context' \(used by prompt_template "\{input\} \{context\}"\)/);
    const data = await load(t5, dir, { train_file: "template.jsonl", prompt_template: "{input} {context}", on_bad_row: "skip" });
    expect(data.train).toHaveLength(1);
    expect(data.report.skipped).toHaveLength(1);
  });

  it("a bad template is a config error", async () => {
    const e = await loadError(t5, dir, { train_file: "template.jsonl", prompt_template: "{input" });
    expect(e.message).toMatch(/data\.prompt_template: unmatched '\{'/);
  });

  it("CSV: a record with the wrong number of fields", async () => {
    const e = await loadError(t5, dir, { train_file: "bad.csv" });
    expect(e.where).toBe(at("bad.csv", 3));
    expect(e.reason).toMatch(/columns length is 2, got 3/);
    const data = await load(t5, dir, { train_file: "bad.csv", on_bad_row: "skip" });
    expect(data.train.map((x) => x.source)).toEqual([at("bad.csv", 2), at("bad.csv", 4)]);
    expect(data.report.skipped.map((s) => s.source)).toEqual([at("bad.csv", 3)]);
  });

  it("JSON: an element that is not an object; a syntax error; a file that is not an array", async () => {
    const e = await loadError(t5, dir, { train_file: "bad.json" });
    expect(e.where).toBe(at("bad.json", 3));
    expect(e.reason).toBe("expected a JSON object, got a number");
    const data = await load(t5, dir, { train_file: "bad.json", on_bad_row: "skip" });
    expect(data.train.map((x) => x.source)).toEqual([at("bad.json", 2), at("bad.json", 4)]);
    expect(data.report.skipped).toHaveLength(1);
    // A file that does not parse cannot be skipped row by row.
    const broken = await loadError(t5, dir, { train_file: "broken.json", on_bad_row: "skip" });
    expect(broken.where).toBe(at("broken.json", 3));
    expect(broken.reason).toMatch(/not valid JSON/);
    const object = await loadError(t5, dir, { train_file: "object.json" });
    expect(object.reason).toMatch(/expected a JSON array of objects, got an object/);
  });
});

describe("examples and loss masking", () => {
  const dir = tempDir();
  writeFiles(dir, {
    "pairs.jsonl": '{"input": "w3 w4", "target": "w5 w6", "kind": "w80"}\n{"input": "w7", "target": "w8", "kind": "w81"}\n',
  });

  it("seq2seq: encoder ids with the tokenizer's </s>; labels = target + eos", async () => {
    const data = await load(t5, dir, { train_file: "pairs.jsonl" });
    const e = data.train[0]!;
    expect(t5.kind).toBe("seq2seq");
    expect(ids(e.inputIds)).toEqual([3, 4, t5.eosTokenId]);
    expect(ids(e.labels)).toEqual([5, 6, t5.eosTokenId]);
    expect(e.promptLength).toBe(0);
  });

  it("causal: loss only on the completion (+ eos); the prompt keeps the tokenizer's <s>", async () => {
    const data = await load(llama, dir, { train_file: "pairs.jsonl", prompt_template: "{input} w9" });
    const e = data.train[0]!;
    expect(ids(e.inputIds)).toEqual([1, 3, 4, 9, 5, 6, 2]);
    expect(ids(e.labels)).toEqual([-100, -100, -100, -100, 5, 6, 2]);
    expect(e.promptLength).toBe(4);
  });

  it("causal with train_on_prompt: loss on every token", async () => {
    const data = await load(llama, dir, { train_file: "pairs.jsonl", train_on_prompt: true });
    const e = data.train[0]!;
    expect(ids(e.labels)).toEqual(ids(e.inputIds));
    expect(e.promptLength).toBe(3);
  });

  it("causal without special tokens (GPT-2): eos closes the completion", async () => {
    const data = await load(gpt2, dir, { train_file: "pairs.jsonl" });
    const e = data.train[0]!;
    expect(ids(e.inputIds)).toEqual([3, 4, 5, 6, 95]);
    expect(ids(e.labels)).toEqual([-100, -100, 5, 6, 95]);
  });

  it("categories: one id per category, on the tokens that carry loss", async () => {
    const data = await load(llama, dir, { train_file: "pairs.jsonl", category_field: "kind" });
    expect(data.categories).toEqual(["w80", "w81"]);
    const [a, b] = data.train;
    expect(a!.category).toBe("w80");
    expect(ids(a!.categoryIds!)).toEqual([-1, -1, -1, 0, 0, 0]);
    expect(ids(b!.categoryIds!)).toEqual([-1, -1, 1, 1]);
  });

  it("truncation: inputs and targets are cut and counted; seq2seq keeps the trailing </s>, targets keep eos", async () => {
    writeFiles(dir, { "long.jsonl": '{"input": "w3 w4 w5 w6", "target": "w7 w8 w9"}\n{"input": "w3", "target": "w4"}\n{"input": "w3 w4 w5", "target": "w7"}\n' });
    const s2s = await load(t5, dir, { train_file: "long.jsonl", max_input_length: 3, max_target_length: 2 });
    expect(ids(s2s.train[0]!.inputIds)).toEqual([3, 4, 1]);
    expect(ids(s2s.train[0]!.labels)).toEqual([7, 1]);
    expect(s2s.report).toMatchObject({ truncatedInputs: 2, truncatedTargets: 1 });
    const causal = await load(llama, dir, { train_file: "long.jsonl", max_input_length: 3, max_target_length: 2 });
    expect(ids(causal.train[0]!.inputIds)).toEqual([1, 3, 4, 7, 2]);
    expect(ids(causal.train[0]!.labels)).toEqual([-100, -100, -100, 7, 2]);
    expect(causal.report).toMatchObject({ truncatedInputs: 2, truncatedTargets: 1 });
  });
});

describe("chat templates", () => {
  const chatml =
    "{% for m in messages %}<|im_start|>{{ m.role }} {{ m.content }} <|im_end|> {% endfor %}" +
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}";
  const dir = tempDir();
  const model = modelFolderWithTokenizer(path.join(dir, "chat"), "llama", ["user assistant system hello there friend"], {
    minFrequency: 1, appendEos: false, extraSpecialTokens: ["<|im_start|>", "<|im_end|>"], chatTemplate: chatml,
  });
  writeFiles(dir, { "chat.jsonl": '{"input": "hello", "target": "there friend"}\n' });

  it("the prompt is the rendered user turn up to the assistant's opening; the completion carries the loss", async () => {
    const ctx = dataContextForModel(model, dir);
    const imEnd = ctx.tokenizer.token_to_id("<|im_end|>")!;
    const data = await loadData(dataConfig({ train_file: "chat.jsonl", chat_template: true, valid_ratio: 0 }), { ...ctx, eosTokenId: imEnd });
    const e = data.train[0]!;
    const tok = (i: number[]) => i.map((id) => ctx.tokenizer.id_to_token(id));
    expect(e.text.input).toBe("<|im_start|>user hello <|im_end|> <|im_start|>assistant ");
    expect(tok(ids(e.inputIds).slice(0, e.promptLength))).toEqual(["<|im_start|>", "user", "hello", "<|im_end|>", "<|im_start|>", "assistant"]);
    // The template closes the turn with <|im_end|>, the chat model's eos: no second eos.
    expect(tok(ids(e.labels).filter((l) => l !== -100))).toEqual(["there", "friend", "<|im_end|>"]);
    const withSystem = await loadData(dataConfig({ train_file: "chat.jsonl", chat_template: true, system_prompt: "friend", valid_ratio: 0 }), { ...ctx, eosTokenId: imEnd });
    expect(withSystem.train[0]!.text.input.startsWith("<|im_start|>system friend <|im_end|>")).toBe(true);
  });

  it("chat_template is refused for seq2seq models and for models without a template", async () => {
    const e1 = await loadError(t5, dir, { train_file: "chat.jsonl", chat_template: true });
    expect(e1.message).toMatch(/data\.chat_template: applies to causal/);
    const e2 = await loadError(llama, dir, { train_file: "chat.jsonl", chat_template: true });
    expect(e2.message).toMatch(/has no chat_template/);
  });
});

describe("dataContextForModel", () => {
  it("reads kind, eos and pad from the folder without loading weights", () => {
    expect([t5.kind, t5.eosTokenId, t5.padTokenId]).toEqual(["seq2seq", 1, 0]);
    expect([gpt2.kind, gpt2.eosTokenId, gpt2.padTokenId]).toEqual(["causal", 95, 95]);
    expect([llama.kind, llama.eosTokenId]).toEqual(["causal", 2]);
  });
});
