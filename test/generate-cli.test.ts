// `s2s-train generate` run as a user runs it (the built dist/ CLI), each result checked against
// model.generate in this process: --prompt, --input/--output, --compare, --interactive, --adapter,
// and the errors a person sees for bad flags and files.
import { spawnSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { runInteractiveSession } from "../src/generate/interactive.js";
import { Model, readSafetensors, type Batch } from "../src/index.js";
import { jsonTokenizerModel, SCHEMAS } from "./constrain-helpers.js";

const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");
const models = path.resolve(import.meta.dirname, "fixtures/models");
const tmp = () => mkdtempSync(path.join(os.tmpdir(), "s2s-generate-"));

function s2s(args: string[], options: { input?: string; columns?: number } = {}) {
  return spawnSync(process.execPath, [cli, "generate", ...args], {
    encoding: "utf8",
    input: options.input ?? "",
    env: { ...process.env, COLUMNS: String(options.columns ?? 100) },
  });
}

describe("s2s-train generate", () => {
  it("--prompt prints what model.generate returns, with flags in transformers' names", async () => {
    const llama = path.join(models, "llama-gqa");
    const r = s2s(["--model", llama, "--prompt", "w1 w2 w3", "--max-new-tokens", "7", "--repetition-penalty", "1.3"]);
    expect(r.status, r.stderr).toBe(0);
    const want = await (await Model.load(llama)).generate("w1 w2 w3", { maxNewTokens: 7, repetitionPenalty: 1.3 });
    expect(r.stdout).toBe(`${want.sequences[0]!.text}\n`);
  });

  it("--input/--output writes one {input, output, tokens, score} row per sequence, in order, batched", async () => {
    const dir = tmp();
    const input = path.join(dir, "prompts.jsonl");
    const output = path.join(dir, "out.jsonl");
    const prompts = ["w1 w2 w3", "w10 w11", "w5", "w60 w61 w62 w63", "w7"];
    writeFileSync(input, prompts.map((p) => JSON.stringify({ input: p, other: 1 })).join("\n") + "\n\n");
    const t5 = path.join(models, "t5-gated");
    const r = s2s(["--model", t5, "--input", input, "--output", output, "--batch-size", "2", "--max-new-tokens", "6",
      "--num-beams", "3", "--num-return-sequences", "2"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`10 rows written to ${output}`);
    const rows = readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const want = await (await Model.load(t5)).generate(prompts, { maxNewTokens: 6, numBeams: 3, numReturnSequences: 2 });
    expect(rows).toEqual(want.sequences.map((s) => ({ input: prompts[s.inputIndex], output: s.text, tokens: s.tokenIds.length, score: expect.closeTo(s.score, 5) })));
    expect(readdirSync(dir).sort()).toEqual(["out.jsonl", "prompts.jsonl"]);  // no temporary file left behind
  });

  it("a bad input row stops with file:line and writes nothing", () => {
    const dir = tmp();
    const input = path.join(dir, "prompts.jsonl");
    writeFileSync(input, "{\"input\": \"w1\"}\n{\"prompt\": \"w2\"}\n");
    const output = path.join(dir, "out.jsonl");
    const r = s2s(["--model", path.join(models, "gpt2"), "--input", input, "--output", output]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${input}:2: expected an object with a string field "input"`);
    expect(existsSync(output)).toBe(false);
  });

  it("--compare prints the settings side by side within the terminal width", async () => {
    const dir = tmp();
    const compare = path.join(dir, "compare.yaml");
    writeFileSync(compare, [
      "- name: greedy",
      "- name: beam4",
      "  num_beams: 4",
      "  length_penalty: 1.2",
      "- name: sampled",
      "  do_sample: true",
      "  temperature: 0.7",
      "  seed: 3",
    ].join("\n"));
    const output = path.join(dir, "rows.jsonl");
    const llama = path.join(models, "llama-gqa");
    const r = s2s(["--model", llama, "--prompt", "w1 w2 w3", "--prompt", "w8 w9", "--compare", compare, "--max-new-tokens", "12", "--output", output], { columns: 80 });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(80);
    expect(lines.filter((l) => /^│ greedy +│ beam4 +│ sampled +│$/.test(l))).toHaveLength(2);  // one table per prompt
    expect(lines).toContain("prompt 2: w8 w9");
    // Each column holds its setting's text (wrapped): the words of the first table, column by column.
    const model = await Model.load(llama);
    const firstTable = lines.slice(lines.indexOf("prompt 1: w1 w2 w3"), lines.indexOf("prompt 2: w8 w9"));
    const settings = [{}, { numBeams: 4, lengthPenalty: 1.2 }, { doSample: true, temperature: 0.7, seed: 3 }];
    for (const [col, options] of settings.entries()) {
      const want = await model.generate(["w1 w2 w3", "w8 w9"], { maxNewTokens: 12, ...options });
      const cells = firstTable.filter((l) => l.startsWith("│")).slice(1).map((l) => l.split("│")[col + 1]!.trim());
      expect(cells.join(" ")).toContain(want.sequences[0]!.text);
    }
    const rows = readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { setting: string });
    expect(rows.map((row) => row.setting)).toEqual(["greedy", "greedy", "beam4", "beam4", "sampled", "sampled"]);
  });

  it("a compare file with an unknown setting names the file, the item and the key", () => {
    const compare = path.join(tmp(), "compare.yaml");
    writeFileSync(compare, "- name: a\n- name: b\n  num_beam: 4\n");
    const r = s2s(["--model", path.join(models, "gpt2"), "--prompt", "w1", "--compare", compare]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(compare);
    expect(r.stderr).toMatch(/1: Unrecognized key: "num_beam"/);
  });

  it("--interactive streams each line's answer until end of input", async () => {
    const qwen = path.join(models, "qwen2");
    const r = s2s(["--model", qwen, "--interactive", "--max-new-tokens", "6"], { input: "w1 w2\n\nw3 w4 w5\n" });
    expect(r.status, r.stderr).toBe(0);
    const model = await Model.load(qwen);
    for (const prompt of ["w1 w2", "w3 w4 w5"]) {
      const want = await model.generate(prompt, { maxNewTokens: 6 });
      expect(r.stdout).toContain(`> ${want.sequences[0]!.text}\n(${want.usage.completionTokens} tokens, `);
    }
  });

  it("in a session, SIGINT cancels the generation under way and the session goes on", async () => {
    const model = await Model.load(path.join(models, "t5-relu-tied"));
    const input = new PassThrough();
    const output = new PassThrough();
    let printed = "";
    output.on("data", (d: Buffer) => {
      printed += d.toString();
    });
    const signals = new EventEmitter();
    // EOS banned: each prompt runs 1500 steps unless cancelled.
    const session = runInteractiveSession({ model, options: { maxNewTokens: 1500, eosTokenId: null, padTokenId: 0 }, input, output, signals });
    input.write("w5 w6 w7\n");
    while (!/ w\d+ w\d+ w\d+/.test(printed)) await new Promise((r) => setTimeout(r, 2));  // tokens are streaming
    signals.emit("SIGINT");
    while (!printed.includes("cancelled)")) await new Promise((r) => setTimeout(r, 2));
    const cancelled = Number(/\((\d+) tokens, [\d.]+ tok\/s, cancelled\)/.exec(printed)![1]);
    expect(cancelled).toBeLessThan(1500);
    input.end("w8\n");
    await session;
    expect(printed.split("tokens,").length - 1).toBe(2);  // the second prompt ran too
  });

  it("--adapter merges a trained PEFT adapter: the output is the adapted model's", async () => {
    const gpt2 = path.join(models, "gpt2");
    const { tensors } = readSafetensors(path.join(gpt2, "fixture.safetensors"));
    const [batchSize = 0, seqLen = 0] = tensors.input_ids!.shape;
    const i32 = (k: string) => Int32Array.from(tensors[k]!.data as Int32Array);
    const batch: Batch = { batchSize, seqLen, inputIds: i32("input_ids"), attentionMask: i32("attention_mask"), labels: i32("labels") };
    const model = await Model.load(gpt2);
    model.applyLora({ r: 4, alpha: 8, targetModules: ["c_attn", "c_proj", "c_fc"], seed: 1 });
    for (let step = 1; step <= 10; step++) await model.trainStep(batch, { step, lr: 5e-2 });
    const adapter = path.join(tmp(), "adapter");
    await model.saveAdapter(adapter);
    const prompt = "w7 w70 w17";
    const adapted = (await model.generate(prompt, { maxNewTokens: 10 })).sequences[0]!.text;
    const base = (await (await Model.load(gpt2)).generate(prompt, { maxNewTokens: 10 })).sequences[0]!.text;
    expect(adapted).not.toBe(base);
    const r = s2s(["--model", gpt2, "--adapter", adapter, "--prompt", prompt, "--max-new-tokens", "10"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${adapted}\n`);
  });

  it("--json-schema FILE constrains the output to the schema; a bad file or schema names it", async () => {
    const dir = jsonTokenizerModel("gpt2");
    const schemaFile = path.join(tmp(), "person.json");
    writeFileSync(schemaFile, JSON.stringify(SCHEMAS.strings));
    const r = s2s(["--model", dir, "--prompt", "ab", "--max-new-tokens", "40", "--json-schema", schemaFile]);
    expect(r.status, r.stderr).toBe(0);
    const want = await (await Model.load(dir)).generate("ab", { maxNewTokens: 40, jsonSchema: SCHEMAS.strings! });
    expect(r.stdout).toBe(`${want.sequences[0]!.text}\n`);
    expect(want.sequences[0]!.finishReason).toBe("eos");
    expect(JSON.parse(want.sequences[0]!.text!)).toHaveProperty("e");
    let bad = s2s(["--model", dir, "--prompt", "ab", "--json-schema", path.join(dir, "missing.json")]);
    expect(bad.stderr).toContain(`--json-schema: cannot read ${path.join(dir, "missing.json")}`);
    writeFileSync(schemaFile, JSON.stringify({ type: "object", properties: { a: { type: "string", contentEncoding: "base64" } } }));
    bad = s2s(["--model", dir, "--prompt", "ab", "--json-schema", schemaFile]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('jsonSchema: JSON schema at /properties/a: keyword "contentEncoding" is not supported');
  });

  it("bad flags are errors naming the flag", () => {
    const gpt2 = path.join(models, "gpt2");
    let r = s2s(["--model", gpt2, "--prompt", "w1", "--temperature", "0", "--early-stopping", "sometimes"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("--early-stopping: expected true, false or never, got sometimes");
    r = s2s(["--model", gpt2, "--prompt", "w1", "--temperature", "-1", "--top-k", "1.5"]);
    expect(r.stderr).toContain("--temperature: Too small");
    expect(r.stderr).toContain("--top-k: Invalid input: expected int");
    r = s2s(["--model", gpt2, "--input", "x.jsonl"]);
    expect(r.stderr).toContain("--input needs --output");
    r = s2s(["--model", gpt2]);
    expect(r.stderr).toContain("give the prompts with --prompt TEXT, --input FILE.jsonl or --interactive");
    r = s2s(["--model", gpt2, "--prompt", "w1", "--max-new-tokns", "3"]);
    expect(r.stderr).toContain("did you mean --max-new-tokens?");
  });
});
