// Models initialised from scratch (Model.create / createModelFolder): the same seed gives the
// same weights, each tensor follows its family's transformers init scheme (std within a few
// percent), the folder is complete and loads, and the bundled example starts learning.
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  Model, createModelFolder, dataConfigSchema, dataContextForModel, loadData, makeCollate, planEpoch, readSafetensors,
} from "../src/index.js";
import { tempDir } from "./data-helpers.js";

const example = path.resolve(import.meta.dirname, "../examples/number-words");
const t5Config = JSON.parse(readFileSync(path.join(example, "model/config.json"), "utf8")) as Record<string, unknown>;

async function weights(config: Record<string, unknown>, seed: number) {
  const dir = path.join(tempDir("s2s-init-"), "model");
  const model = await Model.create(config, { seed });
  await model.save(dir);
  const file = path.join(dir, "model.safetensors");
  const tensors = readSafetensors(file).tensors;
  const f32 = (name: string) => {
    const t = tensors[name];
    if (!t || t.dtype !== "F32") throw new Error(`no F32 tensor ${name}`);
    return t.data;
  };
  return { bytes: readFileSync(file), names: Object.keys(tensors), f32 };
}

function stats(a: Float32Array) {
  let sum = 0;
  let sq = 0;
  for (const v of a) {
    sum += v;
    sq += v * v;
  }
  const mean = sum / a.length;
  return { mean, std: Math.sqrt(sq / a.length - mean * mean) };
}

describe("random initialisation", () => {
  it("is deterministic by seed", async () => {
    const a = await weights(t5Config, 7);
    const b = await weights(t5Config, 7);
    const c = await weights(t5Config, 8);
    expect(a.bytes.equals(b.bytes)).toBe(true);
    expect(a.bytes.equals(c.bytes)).toBe(false);
  });

  it("T5: transformers' scheme (embeddings std f, q f/sqrt(C D), k v f/sqrt(C), o f/sqrt(H D), wo f/sqrt(F), norms f)", async () => {
    const config = { ...t5Config, d_model: 64, d_kv: 16, num_heads: 4, d_ff: 256, initializer_factor: 2, feed_forward_proj: "gated-gelu", tie_word_embeddings: false };
    const w = await weights(config, 1);
    const [C, D, H, F, f] = [64, 16, 4, 256, 2];
    const expected: [string, number][] = [
      ["shared.weight", f],
      ["lm_head.weight", f],
      ["encoder.block.0.layer.0.SelfAttention.q.weight", f / Math.sqrt(C * D)],
      ["encoder.block.0.layer.0.SelfAttention.k.weight", f / Math.sqrt(C)],
      ["decoder.block.1.layer.1.EncDecAttention.v.weight", f / Math.sqrt(C)],
      ["decoder.block.0.layer.0.SelfAttention.o.weight", f / Math.sqrt(H * D)],
      ["encoder.block.1.layer.1.DenseReluDense.wi_0.weight", f / Math.sqrt(C)],
      ["decoder.block.1.layer.2.DenseReluDense.wi_1.weight", f / Math.sqrt(C)],
      ["encoder.block.0.layer.1.DenseReluDense.wo.weight", f / Math.sqrt(F)],
    ];
    for (const [name, std] of expected) {
      const s = stats(w.f32(name));
      expect(Math.abs(s.std / std - 1), name).toBeLessThan(0.05);
      expect(Math.abs(s.mean), name).toBeLessThan(0.05 * std);
    }
    const bias = stats(w.f32("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
    expect(bias.std).toBeGreaterThan(0.5 * f / Math.sqrt(C));  // only 128 values: a loose check
    expect(bias.std).toBeLessThan(1.5 * f / Math.sqrt(C));
    for (const name of w.names.filter((n) => n.endsWith("layer_norm.weight"))) {
      expect(w.f32(name).every((v) => v === f), name).toBe(true);
    }
  });

  it("GPT-2: N(0, 0.02), residual projections 0.02/sqrt(2 n_layer), LayerNorm 1/0, biases 0", async () => {
    const w = await weights({ model_type: "gpt2", vocab_size: 512, n_embd: 64, n_layer: 4, n_head: 4, n_positions: 64 }, 3);
    expect(Math.abs(stats(w.f32("transformer.wte.weight")).std / 0.02 - 1)).toBeLessThan(0.05);
    expect(Math.abs(stats(w.f32("transformer.h.0.mlp.c_fc.weight")).std / 0.02 - 1)).toBeLessThan(0.05);
    expect(Math.abs(stats(w.f32("transformer.h.3.mlp.c_proj.weight")).std / (0.02 / Math.sqrt(8)) - 1)).toBeLessThan(0.05);
    expect(Math.abs(stats(w.f32("transformer.h.1.attn.c_proj.weight")).std / (0.02 / Math.sqrt(8)) - 1)).toBeLessThan(0.05);
    expect(w.f32("transformer.h.0.ln_1.weight").every((v) => v === 1)).toBe(true);
    expect(w.f32("transformer.h.0.ln_1.bias").every((v) => v === 0)).toBe(true);
    expect(w.f32("transformer.h.2.attn.c_attn.bias").every((v) => v === 0)).toBe(true);
  });

  it("Llama: N(0, initializer_range), RMSNorm 1", async () => {
    const w = await weights({ model_type: "llama", vocab_size: 256, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, initializer_range: 0.05 }, 3);
    expect(Math.abs(stats(w.f32("model.embed_tokens.weight")).std / 0.05 - 1)).toBeLessThan(0.05);
    expect(Math.abs(stats(w.f32("model.layers.1.mlp.down_proj.weight")).std / 0.05 - 1)).toBeLessThan(0.05);
    expect(w.f32("model.norm.weight").every((v) => v === 1)).toBe(true);
  });

  it("validates the config like a folder's", async () => {
    await expect(Model.create({ model_type: "t5", vocab_size: 0, d_model: 8, d_kv: 4, d_ff: 8, num_layers: 1, num_heads: 2 }))
      .rejects.toThrow(/vocab_size/);
  });
});

describe("createModelFolder and the bundled example", () => {
  it("writes a complete folder that loads, and refuses to overwrite", async () => {
    const dir = path.join(tempDir("s2s-init-"), "model");
    await createModelFolder(path.join(example, "model"), dir, { seed: 0 });
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
      expect(existsSync(path.join(dir, f)), f).toBe(true);
    }
    const model = await Model.load(dir);
    expect(model.info().parameters).toBeGreaterThan(900_000);
    await expect(createModelFolder(path.join(example, "model"), dir)).rejects.toThrow(/already exists/);
  });

  it("the example's T5 learns from scratch (loss falls by 4x in 150 steps)", async () => {
    const dir = path.join(tempDir("s2s-init-"), "model");
    await createModelFolder(path.join(example, "model"), dir, { seed: 0 });
    const ctx = dataContextForModel(dir, example);
    const data = await loadData(dataConfigSchema.parse({ train_file: "data/words-to-digits.jsonl" }), ctx);
    expect(data.report).toMatchObject({ rows: 10000, skipped: [], truncatedInputs: 0, truncatedTargets: 0 });
    const model = await Model.load(dir, { trainable: true });
    const collate = makeCollate(data.kind, ctx.padTokenId);
    const plan = planEpoch(data.train, { batchSize: 32, seed: 0, epoch: 0, groupByLength: true });
    const losses: number[] = [];
    for (let step = 1; step <= 150; step++) {
      const lr = 1e-3 * Math.min(1, step / 50);
      const r = await model.trainStep(collate(plan[step - 1]!.map((i) => data.train[i]!)), { step, lr, weightDecay: 0.01 });
      losses.push(r.loss);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-10))).toBeLessThan(mean(losses.slice(0, 10)) / 4);
  });
});
