// The CUDA backend end to end through Node, on the simulated GPU: the test build's addon with the
// backend's kernels running in the SIMT simulator (build/sim-addon/s2s_train_sim.node, see
// cmake/cuda_sim.cmake), loaded through S2S_ADDON in this file's own process. The N-API layer,
// the trainer and the checkpoints see a CUDA device and train on it: `device: "cuda"` runs the
// steps on the device and tracks the CPU run's losses; models generate on the device the CPU
// model's tokens; evaluation with generation metrics runs;
// fp16 trains with the loss scaler; a run resumed from a device checkpoint continues exactly. Skipped where the simulated
// addon is not built (non-Linux hosts, or a build with the real CUDA backend).
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

const simAddon = path.resolve(import.meta.dirname, "../build/sim-addon/s2s_train_sim.node");
const available = existsSync(simAddon);
if (available) process.env.S2S_ADDON = simAddon;  // before anything loads the addon

describe.skipIf(!available)("CUDA backend on the simulated GPU, through Node", async () => {
  const { addon } = await import("../bindings/native.js");
  const { train } = await import("../src/train/trainer.js");
  type ProgressEvent = import("../src/train/trainer.js").ProgressEvent;
  type EvaluationEvent = import("../src/train/trainer.js").EvaluationEvent;
  const { Model } = await import("../src/models/model.js");
  const { config, dataset, inOrder, makeExamples, modelsRoot, tempDir } = await import("./train-helpers.js");

  const steps = (events: ProgressEvent[]) => events.map((p) => [p.step, p.loss, p.gradNorm]);
  /** The device the run's log says the model ran on. */
  const ranOn = (dir: string) => JSON.parse(readFileSync(path.join(dir, "logs", "run.jsonl"), "utf8").split("\n")[0] ?? "{}").device;

  async function run(model: string, kind: "causal" | "seq2seq", overrides: string[],
                     options: { dir?: string; stopAt?: number; resume?: boolean } = {}) {
    const dir = options.dir ?? tempDir();
    const progress: ProgressEvent[] = [];
    const evals: EvaluationEvent[] = [];
    const examples = makeExamples(kind, 18, 5, kind === "seq2seq" ? { eos: 1 } : {});
    const controller = new AbortController();
    const result = await train({
      config: config(model, dir, ["train.max_steps=4", "data.batch_size=3", "train.lr=5e-3", ...overrides]),
      data: dataset(kind, examples.slice(0, 14), examples.slice(14), inOrder),
      resume: options.resume,
      signal: controller.signal,
      onProgress: (p) => {
        progress.push(p);
        if (p.step === options.stopAt) controller.abort();
      },
      onEvaluation: (e) => evals.push(e),
    });
    return { progress, evals, dir, result };
  }

  it("the addon reports the simulated device", () => {
    const info = addon().info();
    expect(info.backends).toContain("cuda");
    expect(info.cuda.built).toBe(true);
    // Two, so that a model on the second GPU runs here too.
    expect(info.cuda.devices.map((d) => [d.index, d.name])).toEqual([[0, "SIMT simulator (CPU)"], [1, "SIMT simulator (CPU)"]]);
    expect(info.cuda.devices[0]?.supported).toBe(true);
    // cuBLASLt is the simulator's registered stand-in: no library is looked for.
    expect(info.cuda.cublasLt?.library).toMatch(/SIMT simulator/);
    expect(info.cuda.usable).toBe(true);
    expect(info.cuda.problem).toBeUndefined();
  });

  it("a model loads on the device, GPU 0 unless another is named", async () => {
    const m = await Model.load(path.join(modelsRoot, "gpt2"), { device: "cuda" });
    expect(m.info().device).toBe("cuda:0");
    const second = await Model.load(path.join(modelsRoot, "gpt2"), { device: "cuda:1" });
    expect(second.info().device).toBe("cuda:1");
    // Both decode, taking turns: each step's ops make their own GPU current.
    const options = { maxNewTokens: 4, eosTokenId: null, padTokenId: 0 };
    const [a, b] = await Promise.all([m.generate([[5, 9, 3]], options), second.generate([[5, 9, 3]], options)]);
    expect(b.sequences.map((s) => s.tokenIds)).toEqual(a.sequences.map((s) => s.tokenIds));
    await expect(Model.load(path.join(modelsRoot, "gpt2"), { device: "cuda:2" })).rejects.toMatchObject({
      code: "S2S_DEVICE",
      message: expect.stringContaining("no usable CUDA device: there is no GPU 2 (the CUDA runtime sees 2 devices"),
    });
  });

  it("tf32 puts a GPU model's float32 matmuls on TF32 and leaves the CPU alone", async () => {
    const dir = path.join(modelsRoot, "gpt2");
    const ids = Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 3) % 90);
    const batch = { batchSize: 2, seqLen: 12, inputIds: ids, labels: ids };
    const logits = async (options: { device: "cpu" | "cuda"; tf32?: boolean }) =>
      (await (await Model.load(dir, options)).forward(batch, { logits: true })).logits!;
    const [fp32, tf32] = [await logits({ device: "cuda" }), await logits({ device: "cuda", tf32: true })];
    const diff = fp32.reduce((m, v, i) => Math.max(m, Math.abs(v - tf32[i]!)), 0);
    const scale = fp32.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(diff).toBeGreaterThan(0);  // 10-bit mantissa inputs: other bits
    expect(diff).toBeLessThan(1e-2 * scale);  // the same model
    const cpu = await logits({ device: "cpu" }), cpuTf32 = await logits({ device: "cpu", tf32: true });
    expect(Buffer.from(cpuTf32.buffer).equals(Buffer.from(cpu.buffer))).toBe(true);
  });

  for (const model of ["gpt2", "llama-gqa", "t5-relu-tied"]) {
    it(`${model} on cuda generates the CPU model's tokens (greedy and 3 beams), replaying steps`, async () => {
      const cpu = await Model.load(path.join(modelsRoot, model), { device: "cpu" });
      const gpu = await Model.load(path.join(modelsRoot, model), { device: "cuda" });
      const prompts = [[5, 9, 3, 7], [4, 11]];
      for (const numBeams of [1, 3]) {
        const options = { maxNewTokens: 5, numBeams, eosTokenId: null, padTokenId: 0, decoderStartTokenId: 0 };
        const want = await cpu.generate(prompts, options);
        const got = await gpu.generate(prompts, options);
        expect(got.sequences.map((s) => s.tokenIds)).toEqual(want.sequences.map((s) => s.tokenIds));
        // Every family replays a recorded step (a CUDA graph) from the second step on.
        expect(got.timings.replayedSteps).toBe(got.timings.steps - 1);
        expect(want.timings.replayedSteps).toBe(0);
      }
    });
  }

  for (const [model, kind, extra] of [
    ["gpt2", "causal", ["model.method=full"]],
    ["llama-gqa", "causal", ["model.lora.target_modules=all-linear"]],
    ["t5-relu-tied", "seq2seq", ["model.method=full"]],
  ] as const) {
    it(`${model}: training on cuda tracks the CPU run`, async () => {
      const cpu = await run(model, kind, [...extra, "model.device=cpu"]);
      const gpu = await run(model, kind, [...extra, "model.device=cuda"]);
      expect([ranOn(cpu.dir), ranOn(gpu.dir)]).toEqual(["cpu", "cuda:0"]);
      expect(gpu.progress).toHaveLength(4);
      const losses = (r: { progress: ProgressEvent[] }) => r.progress.map((p) => p.loss ?? NaN);
      const want = losses(cpu), got = losses(gpu);
      got.forEach((l, i) => expect(Math.abs(l - want[i]!)).toBeLessThan(1e-3 * Math.max(1, want[i]!)));
      expect(got[3]!).toBeLessThan(got[0]!);
    });
  }

  it("generate/serve/eval load on the GPU with device auto or cuda", async () => {
    const { loadModelForGeneration } = await import("../src/generate/load-for-generation.js");
    const auto = await loadModelForGeneration({ model: path.join(modelsRoot, "gpt2") });
    const cpu = await loadModelForGeneration({ model: path.join(modelsRoot, "gpt2"), device: "cpu" });
    expect([auto.info().device, cpu.info().device]).toEqual(["cuda:0", "cpu"]);
    const options = { maxNewTokens: 4, eosTokenId: null, padTokenId: 0 };
    const want = await cpu.generate([[5, 9, 3]], options);
    const got = await auto.generate([[5, 9, 3]], options);
    expect(got.sequences[0]!.tokenIds).toEqual(want.sequences[0]!.tokenIds);
  });

  it("evaluation with generation metrics on cuda", async () => {
    const r = await run("gpt2", "causal", ["model.device=cuda", "train.eval_steps=2", "train.eval_metrics=[em]",
                                           "train.eval_generation.max_new_tokens=4"]);
    expect(r.progress).toHaveLength(4);
    expect(r.evals.length).toBeGreaterThanOrEqual(2);
    for (const e of r.evals) {
      expect(Number.isFinite(e.eval_loss)).toBe(true);
      expect(e.metrics.em).toBeGreaterThanOrEqual(0);
    }
  });

  it("a run on the second GPU takes the first GPU's steps, bit for bit", async () => {
    const first = await run("gpt2", "causal", ["model.device=cuda"]);
    const second = await run("gpt2", "causal", ["model.device=cuda:1"]);
    expect([ranOn(first.dir), ranOn(second.dir)]).toEqual(["cuda:0", "cuda:1"]);
    expect(steps(second.progress)).toEqual(steps(first.progress));
  });

  it("memory() and the run log report the GPU's memory", async () => {
    const m = await Model.load(path.join(modelsRoot, "gpt2"), { device: "cuda", trainable: true });
    const n = m.info().parameters;
    const before = m.memory();
    // The simulated device: 16 GiB, its free memory what cudaMalloc does not hold.
    expect(before).toMatchObject({ device: "cuda:0", parameterBytes: 4 * n, gradientBytes: 4 * n, deviceTotalBytes: 16 * 2 ** 30 });
    expect(before.deviceFreeBytes!).toBeLessThanOrEqual(before.deviceTotalBytes! - 8 * n);
    expect(before.activationPeakBytes).toBe(0);
    const batch = { batchSize: 1, seqLen: 4, inputIds: Int32Array.from([1, 2, 3, 4]), labels: Int32Array.from([1, 2, 3, 4]) };
    await m.trainStep(batch, { step: 1, lr: 1e-3, training: false });
    const after = m.memory();
    expect(after.activationPeakBytes).toBeGreaterThan(0);  // the device arena's, not the host's
    expect(after.optimizerStateBytes).toBe(8 * n);
    expect(after.deviceFreeBytes!).toBeLessThan(before.deviceFreeBytes!);  // moments, arena blocks

    const r = await run("gpt2", "causal", ["model.device=cuda", "train.logging_steps=2"]);
    const log = readFileSync(path.join(r.dir, "logs", "run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const lines = log.filter((l) => /^step \d+\/4$/.test(l.msg));
    expect(lines.map((l) => l.msg)).toEqual(["step 2/4", "step 4/4"]);
    for (const l of lines) {
      expect(l.peak_memory_mb).toBeGreaterThan(0);
      expect(l.gpu_memory_total_mb).toBe(16384);
      expect(l.gpu_memory_used_mb).toBeGreaterThan(0);
    }
  });

  it("micro-steps that repeat are replayed on cuda (trainStep, accumulate, the trainer's log)", async () => {
    const m = await Model.load(path.join(modelsRoot, "gpt2"), { device: "cuda", trainable: true });
    const batch = { batchSize: 1, seqLen: 4, inputIds: Int32Array.from([1, 2, 3, 4]), labels: Int32Array.from([1, 2, 3, 4]) };
    const other = { ...batch, inputIds: Int32Array.from([5, 6, 7, 8]), labels: Int32Array.from([5, 6, 7, 8]) };
    const replayed: boolean[] = [];
    // GPT-2's own dropout on, another seed each step: the kernels read the seed from device memory.
    for (let step = 1; step <= 3; step++) replayed.push((await m.trainStep(step === 3 ? other : batch, { step, lr: 1e-3, training: true, dropoutSeed: 10 + step })).replayed);
    // The first runs op by op; the second repeats it and is recorded; the third replays with other ids.
    expect(replayed).toEqual([false, true, true]);
    const longer = { batchSize: 1, seqLen: 5, inputIds: Int32Array.from([1, 2, 3, 4, 5]), labels: Int32Array.from([1, 2, 3, 4, 5]) };
    expect((await m.accumulate(longer, { training: false })).replayed).toBe(false);  // a new shape
    // The trainer, with lengths padded to a multiple and the default LoRA dropout (its mask
    // changes every step), replays steps whose shape repeats.
    const settings = ["data.pad_to_multiple_of=16"];
    const r = await run("gpt2", "causal", ["model.device=cuda", "train.logging_steps=2", ...settings]);
    const log = readFileSync(path.join(r.dir, "logs", "run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const lines = log.filter((l) => /^step \d+\/4$/.test(l.msg));
    // Step 2 repeats step 1 and replays; of steps 3 and 4 at least one has step 2's shape.
    const counts = lines.map((l) => l.replayed_micro_steps as number);
    expect(counts[0]).toBe(1);
    expect(counts[1]).toBeGreaterThanOrEqual(1);
    const cpu = await run("gpt2", "causal", ["model.device=cpu", ...settings]);
    expect(ranOn(cpu.dir)).toBe("cpu");
    for (const [i, p] of r.progress.entries()) expect(p.loss).toBeCloseTo(cpu.progress[i]!.loss!, 4);
  });

  it("trainStep over micro-batches on cuda: accumulate's bits, replays, and a bad batch changes no weight", async () => {
    const load = () => Model.load(path.join(modelsRoot, "gpt2"), { device: "cuda", trainable: true });
    const joined = await load();
    const separate = await load();
    const mk = (ids: number[]) => ({ batchSize: 1, seqLen: ids.length, inputIds: Int32Array.from(ids), labels: Int32Array.from(ids) });
    const rows = [mk([1, 2, 3, 4]), mk([5, 6, 7, 8])];
    const replayed: number[] = [];
    for (let step = 1; step <= 3; step++) {
      const seeds = [step, 100 + step];  // GPT-2's dropout on
      const opt = { step, lr: 1e-3, maxGradNorm: 0.5 };
      const r = await joined.trainStep(rows, { ...opt, training: true, dropoutSeed: seeds });
      let lossSum = 0;
      let count = 0;
      for (let m = 0; m < rows.length; m++) {
        const a = await separate.accumulate(rows[m]!, { training: true, dropoutSeed: seeds[m]! });
        lossSum += a.lossSum;
        count += a.count;
      }
      const s = await separate.optimizerStep({ ...opt, gradScale: 1 / count });
      expect([r.loss, r.gradNorm, r.count]).toEqual([lossSum / count, s.gradNorm, count]);
      replayed.push(r.replayedMicroSteps);
    }
    // The second micro-batch repeats the first's work (other ids, another seed): recorded, and
    // every later one replays.
    expect(replayed).toEqual([1, 2, 2]);
    const logits = async (m: typeof joined) => Array.from((await m.forward(rows[0]!, { logits: true })).logits!);
    expect(await logits(joined)).toEqual(await logits(separate));
    // A token id out of range reaches the device (the embedding kernel reports it): the update
    // is skipped there, the call rejects, and no weight or gradient is left changed.
    const before = await logits(joined);
    await expect(joined.trainStep([rows[0]!, mk([1, 2, 3, 9999])], { step: 4, lr: 1e-3, training: false, dropoutSeed: [0, 0] }))
      .rejects.toMatchObject({ code: "S2S_ARGUMENT", message: expect.stringContaining("9999") });
    expect(await logits(joined)).toEqual(before);
    const next = await joined.trainStep(rows, { step: 4, lr: 1e-3, training: false, dropoutSeed: [0, 0] });
    await separate.trainStep(rows, { step: 4, lr: 1e-3, training: false, dropoutSeed: [0, 0] });
    expect(Number.isFinite(next.loss)).toBe(true);
    expect(await logits(joined)).toEqual(await logits(separate));  // no stale gradient added
  });

  it("float16 on cuda trains with the loss scaler", async () => {
    const r = await run("llama-gqa", "causal", ["model.device=cuda", "model.dtype=float16", "model.method=full"]);
    expect(ranOn(r.dir)).toBe("cuda:0");
    expect(r.progress).toHaveLength(4);
    for (const p of r.progress) expect(Number.isFinite(p.loss!)).toBe(true);
  });

  it("a run stopped and resumed on cuda takes the same steps as the run never stopped", async () => {
    const o = ["model.device=cuda", "model.lora.dropout=0.2", "train.save_steps=2"];
    const straight = await run("gpt2", "causal", o);
    const first = await run("gpt2", "causal", o, { stopAt: 2 });
    expect(first.result.status).toBe("interrupted");
    const second = await run("gpt2", "causal", o, { dir: first.dir, resume: true });
    expect(second.result.status).toBe("completed");
    expect(steps([...first.progress, ...second.progress])).toEqual(steps(straight.progress));
    const final = (d: string) => readFileSync(path.join(d, "final", "adapter_model.safetensors"));
    expect(final(second.dir).equals(final(straight.dir))).toBe(true);
  });
});
