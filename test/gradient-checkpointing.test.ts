// train.gradient_checkpointing through the trainer: with every dropout site on (copies of the
// fixtures with their rates turned up), LoRA dropout and gradient accumulation, a checkpointed run
// logs the same losses and gradient norms and ends with the same weights, bit for bit, as the plain
// run; the option reaches the model; the CLI flag and the config key are wired.
import { describe, expect, it } from "vitest";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import yargs from "yargs";
import { Model } from "../src/models/model.js";
import { trainCommand } from "../src/cli/commands/train.js";
import { resolveTrainConfig } from "../src/train/run-train.js";
import { loadModelForTraining } from "../src/train/load-model.js";
import { train, type ProgressEvent } from "../src/train/trainer.js";
import type { TaskKind } from "../src/data/types.js";
import { config, dataset, inOrder, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";

/** A copy of fixture `model` with config.json's dropout rates set. */
function withDropout(model: string, rates: Record<string, number>): string {
  const dir = tempDir();
  cpSync(path.join(modelsRoot, model), dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
  writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, ...rates }));
  return dir;
}

async function run(modelDir: string, kind: TaskKind, weightsFile: string, overrides: string[]) {
  const dir = tempDir();
  const progress: ProgressEvent[] = [];
  const c = config("gpt2", dir, [`model.path=${modelDir}`, "train.max_steps=4", "data.batch_size=3",
                                 "train.gradient_accumulation_steps=2", "train.lr=5e-3", ...overrides]);
  const examples = makeExamples(kind, 24, 21, kind === "seq2seq" ? { eos: 1 } : {});
  await train({ config: c, data: dataset(kind, examples, [], inOrder), onProgress: (p) => progress.push(p) });
  return {
    steps: progress.map((p) => [p.step, p.loss, p.gradNorm]),
    weights: readFileSync(path.join(dir, "final", weightsFile)),
  };
}

describe("gradient checkpointing in training", () => {
  const cases = [
    {
      name: "gpt2 LoRA (all-linear, dropout 0.2) with embd/resid/attn dropout",
      model: withDropout("gpt2", { embd_pdrop: 0.1, resid_pdrop: 0.1, attn_pdrop: 0.1 }),
      kind: "causal" as const, weightsFile: "adapter_model.safetensors",
      overrides: ["model.lora.dropout=0.2", "model.lora.target_modules=all-linear"],
    },
    {
      name: "llama-gqa full fine-tuning in bfloat16 with attention dropout",
      model: withDropout("llama-gqa", { attention_dropout: 0.1 }),
      kind: "causal" as const, weightsFile: "model.safetensors",
      overrides: ["model.method=full", "model.dtype=bfloat16"],
    },
    {
      name: "t5-relu-tied full fine-tuning (tied head, shared position bias) with dropout_rate",
      model: withDropout("t5-relu-tied", { dropout_rate: 0.1 }),
      kind: "seq2seq" as const, weightsFile: "model.safetensors",
      overrides: ["model.method=full"],
    },
  ];
  for (const c of cases) {
    it(`${c.name}: the same losses, gradient norms and weights`, async () => {
      const plain = await run(c.model, c.kind, c.weightsFile, c.overrides);
      const ckpt = await run(c.model, c.kind, c.weightsFile, [...c.overrides, "train.gradient_checkpointing=true"]);
      expect(plain.steps).toHaveLength(4);
      expect(ckpt.steps).toEqual(plain.steps);
      expect(ckpt.weights.equals(plain.weights)).toBe(true);
      // Dropout is live in these runs: another seed draws other masks and other losses.
      const reseeded = await run(c.model, c.kind, c.weightsFile, [...c.overrides, "train.gradient_checkpointing=true", "train.seed=7"]);
      expect(reseeded.steps).not.toEqual(plain.steps);
    });
  }

  it("train.gradient_checkpointing reaches the model (default off)", async () => {
    const dir = tempDir();
    const off = await loadModelForTraining(config("gpt2", dir, ["model.method=full"]));
    expect(off.gradientCheckpointing).toBe(false);
    const on = await loadModelForTraining(config("gpt2", dir, ["train.gradient_checkpointing=true"]));
    expect(on.gradientCheckpointing).toBe(true);
    on.setGradientCheckpointing(false);
    expect(on.info().gradientCheckpointing).toBe(false);
    const m = await Model.load(path.join(modelsRoot, "t5-relu-tied"));
    expect(() => m.setGradientCheckpointing("yes" as unknown as boolean)).toThrow(/expected true/);
  });

  it("s2s-train train --gradient-checkpointing sets train.gradient_checkpointing", async () => {
    const parsed = async (...args: string[]) => {
      let got: Record<string, unknown> = {};
      await yargs(["train", ...args]).command({ ...trainCommand, handler: (a) => { got = a; } }).parse();
      return got["gradient-checkpointing"];
    };
    expect(await parsed("--gradient-checkpointing")).toBe(true);
    expect(await parsed()).toBeUndefined();  // not given: the config file's value stands
    const resolved = resolveTrainConfig({
      flags: { "train.gradient_checkpointing": true },
      overrides: [`model.path=${path.join(modelsRoot, "gpt2")}`, "data.train_file=x.jsonl"],
    });
    expect(resolved.train.gradient_checkpointing).toBe(true);
  });
});
