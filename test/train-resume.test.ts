// Exact resume: a run stopped at any step and resumed takes the same steps, bit for bit, as the
// run never stopped: the same losses, gradient norms, learning rates, evaluations, logs and final
// weights. Covers LoRA with dropout (gpt2) and full fine-tuning with dropout (t5), gradient
// accumulation, a shuffled data order over several epochs, and a log window across the stop.
import { describe, expect, it } from "vitest";
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { train, type EvaluationEvent, type ProgressEvent, type TrainOptions } from "../src/train/trainer.js";
import { readTrainerState } from "../src/train/trainer-state.js";
import { Model } from "../src/models/model.js";
import { collateFor, config, dataset, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";

/** What must be identical between two runs (timing columns left out). */
async function runRecord(dir: string, weightsFile: string) {
  const withoutTiming = (file: string) => readFileSync(file, "utf8").trim().split("\n").map((l) => l.split(",").slice(0, 5).join(","));
  const state = readTrainerState(path.join(dir, "checkpoints", readdirSync(path.join(dir, "checkpoints")).sort((a, b) => Number(a.split("-")[1]) - Number(b.split("-")[1])).at(-1)!, "trainer_state.json"));
  return {
    weights: readFileSync(path.join(dir, "final", weightsFile)).toString("base64"),
    train: withoutTiming(path.join(dir, "logs/train.csv")),
    valid: readFileSync(path.join(dir, "logs/valid.csv"), "utf8"),
    history: state.log_history.map((h) => (h.kind === "train" ? { ...h, tokens_per_second: 0, elapsed_seconds: 0 } : h)),
    best: [state.best_metric, state.best_model_checkpoint],
  };
}

interface Case {
  name: string;
  model: string;
  weightsFile: string;
  kind: "causal" | "seq2seq";
  overrides: string[];
}

async function expectExactResume(c: Case, stopAt: number[], makeModelDir: () => string = () => path.join(modelsRoot, c.model)) {
  const ex = makeExamples(c.kind, 22, 31);
  const data = dataset(c.kind, ex.slice(0, 18), ex.slice(18));
  const modelDir = makeModelDir();
  const options = (dir: string): Omit<TrainOptions, "onProgress"> => ({
    config: { ...config(c.model, dir, c.overrides), model: { ...config(c.model, dir, c.overrides).model, path: modelDir } },
    data,
  });
  const steps = (events: ProgressEvent[]) => events.map((p) => [p.step, p.loss, p.gradNorm, p.learningRate, p.countedTokens]);

  const straightDir = tempDir();
  const straight: ProgressEvent[] = [];
  const straightEvals: EvaluationEvent[] = [];
  const done = await train({ ...options(straightDir), onProgress: (p) => straight.push(p), onEvaluation: (e) => straightEvals.push(e) });
  expect(done.status).toBe("completed");
  const want = await runRecord(straightDir, c.weightsFile);

  for (const k of stopAt) {
    const dir = tempDir();
    const events: ProgressEvent[] = [];
    const evals: EvaluationEvent[] = [];
    const controller = new AbortController();
    const first = await train({
      ...options(dir), signal: controller.signal, onEvaluation: (e) => evals.push(e),
      onProgress: (p) => { events.push(p); if (p.step === k) controller.abort(); },
    });
    expect(first.status).toBe("interrupted");
    expect(first.globalStep).toBe(k);
    expect(first.finalDir).toBeNull();
    expect(existsSync(path.join(dir, `checkpoints/checkpoint-${k}`))).toBe(true);
    const second = await train({ ...options(dir), resume: true, onProgress: (p) => events.push(p), onEvaluation: (e) => evals.push(e) });
    expect(second.status).toBe("completed");
    // Bit-identical: exact equality of every number, and of the final weights' bytes.
    expect(steps(events), `stopped at step ${k}`).toEqual(steps(straight));
    expect(evals.map((e) => [e.step, e.eval_loss, e.isBest])).toEqual(straightEvals.map((e) => [e.step, e.eval_loss, e.isBest]));
    expect(await runRecord(dir, c.weightsFile), `stopped at step ${k}`).toEqual(want);
  }
  return { straight, options, want };
}

describe("exact resume", () => {
  const lora: Case = {
    name: "gpt2 LoRA with dropout", model: "gpt2", weightsFile: "adapter_model.safetensors", kind: "causal",
    overrides: ["model.lora.dropout=0.2", "model.lora.target_modules=all-linear", "train.lr=5e-3", "train.weight_decay=0.01",
                "train.epochs=4", "data.batch_size=3", "train.gradient_accumulation_steps=2", "train.scheduler=cosine",
                "train.warmup_steps=2", "train.logging_steps=5", "train.eval_steps=2", "train.save_steps=3"],
  };

  it("gpt2 LoRA with dropout and accumulation: stopped mid-epoch, at an epoch's end, and mid log window", async () => {
    // 18 examples, batches of 3, 2 per step: 3 steps per epoch, 12 in all.
    const { straight, options, want } = await expectExactResume(lora, [1, 4, 6, 11]);
    expect(straight).toHaveLength(12);

    // Resuming from an earlier checkpoint by path retraces the rest (later checkpoints go).
    const dir = tempDir();
    const controller = new AbortController();
    await train({ ...options(dir), signal: controller.signal, onProgress: (p) => { if (p.step === 7) controller.abort(); } });
    expect(readdirSync(path.join(dir, "checkpoints")).sort()).toEqual(["checkpoint-3", "checkpoint-6", "checkpoint-7"]);
    const events: ProgressEvent[] = [];
    await train({ ...options(dir), resume: path.join(dir, "checkpoints/checkpoint-3"), onProgress: (p) => events.push(p) });
    expect(events.map((p) => p.loss)).toEqual(straight.slice(3).map((p) => p.loss));
    expect(await runRecord(dir, lora.weightsFile)).toEqual(want);
  });

  it("t5 full fine-tuning with dropout", async () => {
    // A copy of the fixture with dropout on, so resumed steps must draw the same masks.
    const withDropout = () => {
      const dir = tempDir();
      cpSync(path.join(modelsRoot, "t5-relu-tied"), dir, { recursive: true });
      const cfg = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
      writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, dropout_rate: 0.1 }));
      return dir;
    };
    const t5: Case = {
      name: "t5 full", model: "t5-relu-tied", weightsFile: "model.safetensors", kind: "seq2seq",
      overrides: ["model.method=full", "train.lr=3e-3", "train.max_steps=8", "data.batch_size=4", "train.logging_steps=3",
                  "train.eval_steps=4", "train.save_steps=4"],
    };
    const modelDir = withDropout();
    const { straight } = await expectExactResume(t5, [3, 5], () => modelDir);
    // Dropout is really on: the first training loss differs from the same batch without dropout.
    const model = await Model.load(modelDir);
    const ex = makeExamples("seq2seq", 22, 31).slice(0, 18);
    expect(straight[0]!.loss).not.toBe((await model.forward(collateFor("seq2seq")(ex.slice(0, 4)))).loss);
  });

  it("float16 full fine-tuning: skipped overflow steps and the loss scale resume exactly", async () => {
    // A starting scale of 2^24 overflows fp16 in the first steps (skipped, the scale halves each
    // time); a growth interval of 3 doubles it again and again, so overflows recur mid-run.
    const fp16: Case = {
      name: "gpt2 float16 full", model: "gpt2", weightsFile: "model.safetensors", kind: "causal",
      overrides: ["model.method=full", "model.dtype=float16", "train.lr=3e-3", "train.max_steps=12", "data.batch_size=2",
                  "train.gradient_accumulation_steps=2",
                  "train.logging_steps=4", "train.eval_steps=4", "train.save_steps=3", "train.scheduler=cosine",
                  "train.loss_scaling.init_scale=16777216", "train.loss_scaling.growth_interval=3"],
    };
    const { straight, options } = await expectExactResume(fp16, [2, 5, 9]);
    expect(straight).toHaveLength(12);
    const dir = tempDir();
    await train(options(dir));
    const state = readTrainerState(path.join(dir, "checkpoints/checkpoint-12/trainer_state.json"));
    // Some steps were skipped (their gradient norm is not finite), not all; the rest trained.
    const skipped = straight.filter((p) => !Number.isFinite(p.gradNorm)).length;
    expect(skipped).toBeGreaterThan(1);
    expect(state.loss_scaler).toMatchObject({ skipped_steps: skipped });
    expect(state.optimizer_steps).toBe(12 - skipped);
    expect(state.loss_scaler!.scale).toBeLessThan(16777216);
    // The schedule advances with applied steps only: a skipped step's successor has its lr.
    const i = straight.findIndex((p, k) => k > 0 && !Number.isFinite(p.gradNorm));
    if (i >= 0 && i + 1 < straight.length) expect(straight[i + 1]!.learningRate).toBe(straight[i]!.learningRate);
    const losses = straight.map((p) => p.loss!);
    expect(Math.min(...losses.slice(-3))).toBeLessThan(losses[0]!);
  });

  it("--resume errors name what is wrong", async () => {
    const dir = tempDir();
    const ex = makeExamples("causal", 8, 32);
    const c = config("gpt2", dir, ["train.max_steps=2", "data.batch_size=4"]);
    await expect(train({ config: c, data: dataset("causal", ex, []), resume: true })).rejects.toThrow(/checkpoints: no checkpoint to resume from/);
    await expect(train({ config: c, data: dataset("causal", ex, []), resume: dir })).rejects.toThrow(/not a checkpoint folder/);
    await train({ config: c, data: dataset("causal", ex, []) });
    await expect(train({ config: { ...c, model: { ...c.model, method: "full" } }, data: dataset("causal", ex, []), resume: true }))
      .rejects.toThrow(/holds a LoRA adapter, but model\.method is full/);
    // A resumed run that is already complete just writes final/ again.
    const again = await train({ config: c, data: dataset("causal", ex, []), resume: true });
    expect(again).toMatchObject({ status: "completed", globalStep: 2 });
  });
});
