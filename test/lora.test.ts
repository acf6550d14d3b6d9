// LoRA through the public API: step 0 equals the base, training moves only the adapter, PEFT's
// file layout both ways (our saved adapter; an adapter folder built from PyTorch/PEFT fixture
// tensors), and merge + export giving the same model.
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Model, readSafetensors, writeSafetensors, type Batch } from "../src/index.js";
import { maxDiff } from "./helpers.js";

const root = path.resolve(import.meta.dirname, "fixtures/models");
const tmp = () => mkdtempSync(path.join(os.tmpdir(), "s2s-lora-"));

function gpt2Fixture() {
  const { tensors, metadata } = readSafetensors(path.join(root, "gpt2", "fixture.safetensors"));
  const i32 = (k: string) => Int32Array.from(tensors[k]!.data as Int32Array);
  const [batchSize = 0, seqLen = 0] = tensors.input_ids!.shape;
  const batch: Batch = { batchSize, seqLen, inputIds: i32("input_ids"), attentionMask: i32("attention_mask"), labels: i32("labels") };
  return { batch, tensors, lora: JSON.parse(metadata.fixture!).lora as { r: number; lora_alpha: number; target_modules: string[] } };
}

describe("LoRA", () => {
  it("starts as the base model, trains only the adapter, and round-trips through PEFT's layout", async () => {
    const { batch } = gpt2Fixture();
    const model = await Model.load(path.join(root, "gpt2"));
    const base = await model.forward(batch, { logits: true });
    model.applyLora({ r: 4, alpha: 8, targetModules: ["c_attn", "c_proj", "c_fc"], seed: 7 });
    const info = model.info();
    const trainable = info.params.filter((p) => p.trainable);
    expect(trainable.length).toBe(2 * 2 * 4); // 2 layers x (c_attn, attn c_proj, c_fc, mlp c_proj) x (A, B)
    expect(trainable.every((p) => /\.lora_[AB]\.weight$/.test(p.name))).toBe(true);
    const step0 = await model.forward(batch, { logits: true });
    expect(maxDiff(step0.logits!, base.logits!)).toBe(0);

    let first = 0, last = 0;
    for (let step = 1; step <= 8; step++) {
      const r = await model.trainStep(batch, { step, lr: 5e-3 });
      if (step === 1) first = r.loss;
      last = r.loss;
    }
    expect(last).toBeLessThan(first);
    const trained = await model.forward(batch, { logits: true });

    const dir = path.join(tmp(), "adapter");
    await model.saveAdapter(dir);
    const config = JSON.parse(readFileSync(path.join(dir, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({ peft_type: "LORA", task_type: "CAUSAL_LM", r: 4, lora_alpha: 8, fan_in_fan_out: true });
    const saved = readSafetensors(path.join(dir, "adapter_model.safetensors")).tensors;
    expect(saved["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"]?.shape).toEqual([4, 32]);
    expect(saved["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]?.shape).toEqual([96, 4]);

    const reloaded = await Model.load(path.join(root, "gpt2"));
    await reloaded.loadAdapter(dir);
    expect(maxDiff((await reloaded.forward(batch, { logits: true })).logits!, trained.logits!)).toBe(0);

    await reloaded.mergeLora();
    const merged = await reloaded.forward(batch, { logits: true });
    expect(maxDiff(merged.logits!, trained.logits!)).toBeLessThan(1e-5);
    const exported = path.join(tmp(), "merged");
    await reloaded.save(exported);
    expect(existsSync(path.join(exported, "model.safetensors"))).toBe(true);
    const again = await Model.load(exported);
    expect(maxDiff((await again.forward(batch, { logits: true })).logits!, merged.logits!)).toBe(0);
  });

  it("loads an adapter folder in PEFT's layout and reproduces PEFT's logits", async () => {
    const { batch, tensors, lora } = gpt2Fixture();
    const dir = tmp();
    writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify({
      peft_type: "LORA", task_type: "CAUSAL_LM", r: lora.r, lora_alpha: lora.lora_alpha, lora_dropout: 0,
      target_modules: lora.target_modules, fan_in_fan_out: true, bias: "none", inference_mode: true,
      base_model_name_or_path: "gpt2", modules_to_save: null, init_lora_weights: true,
    }));
    const adapterTensors = Object.fromEntries(
      Object.entries(tensors).filter(([k]) => k.startsWith("lora.init.")).map(([k, t]) => [k.slice("lora.init.".length), t]),
    );
    await writeSafetensors(path.join(dir, "adapter_model.safetensors"), adapterTensors, { format: "pt" });
    const model = await Model.load(path.join(root, "gpt2"));
    await model.loadAdapter(dir);
    const out = await model.forward(batch, { logits: true });
    expect(maxDiff(out.logits!, tensors["lora.logits"]!.data as Float32Array)).toBeLessThan(1e-4);
    expect(Math.abs(out.loss! - (tensors["lora.loss"]!.data as Float32Array)[0]!)).toBeLessThan(1e-5);
  });

  it("explains what is wrong with a LoRA request", async () => {
    const model = await Model.load(path.join(root, "gpt2"));
    expect(() => model.applyLora({ r: 4, alpha: 8, targetModules: ["q_proj"] })).toThrow(/q_proj/);
    model.applyLora({ r: 4, alpha: 8 });
    expect(() => model.applyLora({ r: 4, alpha: 8 })).toThrow(/merge or detach/);
    await expect(model.save(tmp())).rejects.toThrow(/merge or detach/);
    model.detachLora();
    await expect(model.saveAdapter(tmp())).rejects.toMatchObject({ code: "S2S_ARGUMENT" });
  });
});
