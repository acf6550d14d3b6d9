// Learning-rate schedules against transformers' curves (src/transformers/optimization.py:
// _get_constant_schedule_with_warmup_lr_lambda, _get_linear_schedule_with_warmup_lr_lambda,
// _get_cosine_schedule_with_warmup_lr_lambda with num_cycles 0.5; TrainingArguments.get_warmup_steps
// = ceil(total * warmup_ratio)). The factor is a function of the steps already taken, so optimizer
// step s uses factor(s - 1). Expected values are worked out by hand from those formulas.
import { describe, expect, it } from "vitest";
import { learningRateAt, scheduleFactor, warmupStepsFor } from "../src/train/schedule.js";
import { train } from "../src/train/trainer.js";
import { config, dataset, makeExamples, tempDir } from "./train-helpers.js";

const factors = (scheduler: "constant" | "linear" | "cosine", warmupSteps: number, totalSteps: number) =>
  Array.from({ length: totalSteps + 1 }, (_, k) => scheduleFactor({ scheduler, warmupSteps, totalSteps }, k));

describe("schedules", () => {
  it("constant with warmup", () => {
    expect(factors("constant", 3, 6)).toEqual([0, 1 / 3, 2 / 3, 1, 1, 1, 1]);
    expect(factors("constant", 0, 3)).toEqual([1, 1, 1, 1]);
  });

  it("linear with warmup: up to 1 at the end of warmup, down to 0 at the last step", () => {
    expect(factors("linear", 2, 10)).toEqual([0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0]);
    expect(factors("linear", 0, 4)).toEqual([1, 0.75, 0.5, 0.25, 0]);
  });

  it("cosine with warmup: half a cosine from 1 to 0 after warmup", () => {
    const f = factors("cosine", 2, 10);
    const want = [0, 0.5, 1, 0.9619397662556434, 0.8535533905932737, 0.6913417161825449, 0.5, 0.3086582838174551,
                  0.14644660940672627, 0.03806023374435663, 0];
    f.forEach((v, k) => expect(v).toBeCloseTo(want[k]!, 14));
  });

  it("warmup_ratio rounds up, warmup_steps wins when set", () => {
    expect(warmupStepsFor(10, 0, 0.15)).toBe(2);
    expect(warmupStepsFor(100, 0, 0.1)).toBe(10);
    expect(warmupStepsFor(10, 3, 0)).toBe(3);
  });

  it("the first update with warmup has learning rate 0, as in transformers", () => {
    expect(learningRateAt({ scheduler: "linear", lr: 1e-3, warmupSteps: 2, totalSteps: 10 }, 1)).toBe(0);
    expect(learningRateAt({ scheduler: "linear", lr: 1e-3, warmupSteps: 2, totalSteps: 10 }, 3)).toBe(1e-3);
  });

  it("the training loop steps with exactly these rates and logs them", async () => {
    const ex = makeExamples("causal", 12, 3);
    const rates: number[] = [];
    await train({
      config: config("gpt2", tempDir(), ["train.lr=1e-3", "train.scheduler=cosine", "train.warmup_ratio=0.2", "train.max_steps=10", "data.batch_size=4"]),
      data: dataset("causal", ex, []),
      onProgress: (p) => rates.push(p.learningRate),
    });
    expect(rates).toEqual(factors("cosine", 2, 10).slice(0, 10).map((f) => 1e-3 * f));
  });
});
