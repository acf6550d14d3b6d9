// Model folders: config validation with errors naming file and field, weight file discovery
// (single and sharded), generation defaults, and tokenizer loading.
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { inspectModelFolder } from "../src/models/model-folder.js";
import { loadTokenizer } from "../src/models/tokenizer.js";

const gpt2Config = {
  model_type: "gpt2", architectures: ["GPT2LMHeadModel"], vocab_size: 16, n_embd: 8, n_layer: 2,
  n_head: 2, n_positions: 32, n_inner: null, layer_norm_epsilon: 1e-5, activation_function: "gelu_new",
};

function folder(files: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-model-"));
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(path.join(dir, name), typeof content === "string" ? content : JSON.stringify(content));
  }
  return dir;
}

describe("model folders", () => {
  it("reads a single-file GPT-2 folder with defaults filled in", () => {
    const dir = folder({ "config.json": gpt2Config, "model.safetensors": "" });
    const m = inspectModelFolder(dir);
    expect(m.config.model_type).toBe("gpt2");
    expect(m.weightFiles).toEqual([path.join(dir, "model.safetensors")]);
    expect(m.generationConfig.max_length).toBe(20);
    expect(m.generationConfig.num_beams).toBe(1);
    expect(m.configText).toContain('"n_embd":8');
  });

  it("names the file and the field for unsupported or bad values", () => {
    const bert = folder({ "config.json": { model_type: "bert" }, "model.safetensors": "" });
    expect(() => inspectModelFolder(bert)).toThrow(/config\.json: invalid:\n.*model_type "bert" is not supported; supported: gpt2, llama, qwen2, t5/);
    const badHeads = folder({ "config.json": { ...gpt2Config, n_head: 3 }, "model.safetensors": "" });
    expect(() => inspectModelFolder(badHeads)).toThrow(/n_head: expected a divisor of the hidden size 8, got 3/);
    const scaled = folder({
      "config.json": {
        model_type: "llama", vocab_size: 16, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1,
        num_attention_heads: 2, rope_scaling: { rope_type: "llama3", factor: 8 },
      },
      "model.safetensors": "",
    });
    expect(() => inspectModelFolder(scaled)).toThrow(/rope_scaling: rope_scaling is not supported yet/);
    const notJson = folder({ "config.json": "{ nope", "model.safetensors": "" });
    expect(() => inspectModelFolder(notJson)).toThrow(/config\.json: is not valid JSON/);
  });

  it("finds shards through the index and names a missing one", () => {
    const index = { metadata: { total_size: 10 }, weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } };
    const dir = folder({
      "config.json": gpt2Config, "model.safetensors.index.json": index,
      "model-00001-of-00002.safetensors": "", "model-00002-of-00002.safetensors": "",
    });
    const m = inspectModelFolder(dir);
    expect(m.weightFiles.map((f) => path.basename(f))).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    expect(path.basename(m.weightMap!.b!)).toBe("model-00002-of-00002.safetensors");
    const missing = folder({ "config.json": gpt2Config, "model.safetensors.index.json": index, "model-00001-of-00002.safetensors": "" });
    expect(() => inspectModelFolder(missing)).toThrow(/model\.safetensors\.index\.json: weight_map\.b: shard model-00002-of-00002\.safetensors is missing/);
  });

  it("explains a folder with only pytorch_model.bin", () => {
    const dir = folder({ "config.json": gpt2Config, "pytorch_model.bin": "" });
    expect(() => inspectModelFolder(dir)).toThrow(/convert the weights to model\.safetensors/);
  });

  it("loads a tokenizer.json and round-trips text", () => {
    const vocab: Record<string, number> = { "[UNK]": 0, hello: 1, world: 2, "!": 3 };
    const tokenizer = {
      version: "1.0", truncation: null, padding: null, added_tokens: [
        { id: 0, content: "[UNK]", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ],
      normalizer: null, pre_tokenizer: { type: "Whitespace" }, post_processor: null,
      decoder: null, model: { type: "WordLevel", vocab, unk_token: "[UNK]" },
    };
    const dir = folder({ "tokenizer.json": tokenizer });
    const tok = loadTokenizer(dir);
    const enc = tok.encode("hello world !");
    expect(enc.ids).toEqual([1, 2, 3]);
    expect(tok.decode([1, 2])).toBe("hello world");
    expect(() => loadTokenizer(folder({}))).toThrow(/tokenizer\.json: file not found/);
  });
});

describe("the PyTorch fixture folders", () => {
  const root = path.resolve(import.meta.dirname, "fixtures/models");
  for (const name of ["gpt2", "llama-gqa", "qwen2", "t5-gated", "t5-relu-tied"]) {
    it(`${name}: config, weights and tokenizer load`, () => {
      const m = inspectModelFolder(path.join(root, name));
      expect(m.weightFiles.length).toBe(name === "llama-gqa" ? 2 : 1);
      const tok = loadTokenizer(m.dir);
      const ids = tok.encode("w10 w11 w12", { add_special_tokens: false }).ids;
      expect(ids.length).toBe(3);
    });
  }
});
