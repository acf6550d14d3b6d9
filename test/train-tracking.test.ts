// The trackers and the report inside train(): TensorBoard event files in logs/tensorboard holding
// every train-log line and evaluation at its step (read back by the independent reader of
// tfevents-reader.ts), a resumed run's new file with a restart marker so that TensorBoard shows
// one uninterrupted curve, training numbers unchanged by tracking, report.html at the end of
// every session, and a tracker that cannot start stopping the run before its first step.
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { train, TrackingStartError, type TrainResult } from "../src/train/trainer.js";
import type { GenerationMetrics } from "../src/train/evaluate.js";
import { config, dataset, makeExamples, tempDir } from "./train-helpers.js";
import { readEventDir, type ParsedEvent } from "./tfevents-reader.js";

const train_ = makeExamples("causal", 12, 21);
const valid = makeExamples("causal", 4, 22);
const OVERRIDES = ["model.method=full", "train.max_steps=6", "data.batch_size=4", "train.lr=1e-3", "train.eval_steps=2", "train.save_steps=2"];

/** A generation-metrics hook whose score depends on the step only (resume gives the same values). */
const em: GenerationMetrics = async ({ step }) => ({ em: 10 * step });

function run(dir: string, extra: Partial<Parameters<typeof train>[0]> = {}, overrides: string[] = []): Promise<TrainResult> {
  return train({ config: config("gpt2", dir, [...OVERRIDES, ...overrides]), data: dataset("causal", train_, valid), generationMetrics: em, ...extra });
}

/** scalars by tag, as [step, value] pairs, after TensorBoard's purge on a SessionLog START (steps >= it dropped). */
function tensorboardView(files: ParsedEvent[][]): Record<string, [number, number][]> {
  const events: ParsedEvent[] = [];
  for (const event of files.flat()) {
    if (event.sessionStatus === 1) {
      const from = event.step!;
      for (let i = events.length - 1; i >= 0; i--) if (events[i]!.step! >= from) events.splice(i, 1);
    }
    if (event.scalars) events.push(event);
  }
  const view: Record<string, [number, number][]> = {};
  for (const e of events) for (const [tag, value] of Object.entries(e.scalars!)) (view[tag] ??= []).push([Number(e.step), value]);
  return view;
}

/** What the history says TensorBoard should hold (float32, as Summary.Value.simple_value is). */
function expectedView(history: TrainResult["history"]): Record<string, [number, number][]> {
  const view: Record<string, [number, number][]> = {};
  const add = (tag: string, step: number, v: number | null) => {
    if (v !== null) (view[tag] ??= []).push([step, Math.fround(v)]);
  };
  for (const h of history) {
    if (h.kind === "train") {
      add("train/learning_rate", h.step, h.learning_rate);
      add("train/grad_norm", h.step, h.grad_norm);
      add("train/tokens_per_second", h.step, h.tokens_per_second);
      add("train/epoch", h.step, h.epoch);
      add("train/loss", h.step, h.loss);
    } else {
      add("eval/loss", h.step, h.eval_loss);
      add("eval/perplexity", h.step, h.perplexity);
      for (const [k, v] of Object.entries(h.metrics)) add(`eval/${k}`, h.step, v);
    }
  }
  return view;
}

describe("tracking and the report in train()", () => {
  it("a run leaves TensorBoard events with every log line and evaluation at its step, and report.html with the charts", async () => {
    const dir = tempDir();
    const result = await run(dir);
    const tbDir = path.join(dir, "logs/tensorboard");
    const files = readEventDir(tbDir);
    expect(files).toHaveLength(1);
    expect(files[0]![0]!.fileVersion).toBe("brain.Event:2");
    const view = tensorboardView(files);
    expect(view["train/loss"]!.map(([s]) => s)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(view["eval/loss"]!.map(([s]) => s)).toEqual([2, 4, 6]);
    expect(view["eval/em"]).toEqual([[2, 20], [4, 40], [6, 60]]);
    expect(view).toEqual(expectedView(result.history));

    expect(result.report).toBe(path.join(dir, "report.html"));
    const html = readFileSync(result.report!, "utf8");
    const charts = [...html.matchAll(/<figure class="chart" data-chart="([^"]*)"/g)].map((m) => m[1]);
    expect(charts).toEqual(expect.arrayContaining(["loss", "learning_rate", "tokens_per_second", "grad_norm", "perplexity", "em"]));
    // the loss chart has both curves drawn
    const loss = html.slice(html.indexOf('data-chart="loss"'), html.indexOf('data-chart="learning_rate"'));
    expect([...loss.matchAll(/<path class="series" data-series="([^"]+)"[^>]* d="M[^"]+"/g)].map((m) => m[1])).toEqual(["train", "validation"]);
    const runLog = readFileSync(path.join(dir, "logs/run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(runLog.at(-1).msg).toBe(`report: ${result.report}`);
  });

  it("tracking changes no training number; a resume retraces into a new event file that TensorBoard merges", async () => {
    const straightDir = tempDir();
    const straight = await run(straightDir, {}, ["tracking.tensorboard=false"]);
    expect(existsSync(path.join(straightDir, "logs/tensorboard"))).toBe(false);

    const dir = tempDir();
    const controller = new AbortController();
    const first = await run(dir, { signal: controller.signal, onProgress: (p) => { if (p.step === 5) controller.abort(); } });
    expect(first.status).toBe("interrupted");
    expect(first.report).toBe(path.join(dir, "report.html")); // also when interrupted
    // Resume from checkpoint-2: steps 3-5 are logged again, in a second file.
    const resumed = await run(dir, { resume: path.join(dir, "checkpoints/checkpoint-2") });
    expect(resumed.status).toBe("completed");
    const strip = (h: TrainResult["history"]) => h.map((e) => (e.kind === "train" ? { ...e, tokens_per_second: 0, elapsed_seconds: 0 } : e));
    expect(strip(resumed.history)).toEqual(strip(straight.history));

    const files = readEventDir(path.join(dir, "logs/tensorboard"));
    expect(files).toHaveLength(2);
    expect(files[0]!.filter((e) => e.scalars?.["train/loss"] !== undefined).map((e) => Number(e.step))).toEqual([1, 2, 3, 4, 5]);
    expect(files[1]![1]).toMatchObject({ step: 3n, sessionStatus: 1 });
    const view = tensorboardView(files);
    const noSpeed = (v: Record<string, [number, number][]>) => {
      const { "train/tokens_per_second": _, ...rest } = v;
      return rest;
    };
    expect(noSpeed(view)).toEqual(noSpeed(expectedView(straight.history)));
    expect(view["train/tokens_per_second"]!.map(([s]) => s)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("a tracker that cannot start stops the run before its first step and leaves no run behind", async () => {
    // A port that was just free: nothing listens there (fetch refuses privileged "bad ports" like 1 itself).
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const dir = tempDir();
    const started = Date.now();
    const error = await run(dir, {}, [`tracking.mlflow.tracking_uri=http://127.0.0.1:${port}`]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrackingStartError);
    expect((error as Error).message).toMatch(new RegExp(
      `^tracking: MLflow: GET http://127\\.0\\.0\\.1:${port}/api/2\\.0/mlflow/experiments/get-by-name\\?.* failed: fetch failed \\(.*ECONNREFUSED.*\\) \\(the run did not start`));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(readdirSync(dir)).toEqual([]);
  });
});
