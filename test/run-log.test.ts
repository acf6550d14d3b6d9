// What a person sees: the progress line on a terminal (redrawn in place, log lines above it),
// plain lines elsewhere, and pino JSON lines in the run's log file either way.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { formatDuration, formatProgress } from "../src/train/progress.js";
import { RunLog } from "../src/train/run-log.js";
import { tempDir } from "./train-helpers.js";

/** A stream that records what is written, posing as a terminal or not. */
function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  const stream = { isTTY, columns: 120, write: (s: string) => { chunks.push(s); return true; } };
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => chunks.join("") };
}

const state = { step: 25, totalSteps: 100, loss: 1.23456, learningRate: 3e-4, tokensPerSecond: 12345.6, etaSeconds: 83 };

describe("progress and console", () => {
  it("the progress line shows step, bar, loss, learning rate, tokens/s and ETA", () => {
    const line = formatProgress(state, 120);
    expect(line).toMatch(/^step 25\/100 █+░+  25% \| loss 1\.2346 \| lr 3\.00e-4 \| 12,346 tok\/s \| ETA 01:23$/);
    expect(formatDuration(3725)).toBe("1:02:05");
    expect(formatProgress({ ...state, loss: null, etaSeconds: null }, 80)).toContain("loss - | lr 3.00e-4 | 12,346 tok/s | ETA --:--");
  });

  it("on a terminal the line is redrawn in place and log lines go above it", () => {
    const dir = tempDir();
    const { stream, text } = fakeStream(true);
    const log = new RunLog(path.join(dir, "logs/run.jsonl"), { stream });
    log.progress(state);
    log.info("evaluation at step 25", { eval_loss: 0.5 });
    log.close();
    expect(text()).toMatch(/^\r\x1b\[2Kstep 25\/100 .*\r\x1b\[2Ks2s-train: evaluation at step 25  eval_loss=0\.5\n\r\x1b\[2Kstep 25\/100 .*\n$/s);
    const lines = readFileSync(path.join(dir, "logs/run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toEqual([expect.objectContaining({ level: 30, msg: "evaluation at step 25", eval_loss: 0.5 })]);
  });

  it("elsewhere there is no progress line, only plain lines; the library default writes the file only", () => {
    const { stream, text } = fakeStream(false);
    const log = new RunLog(path.join(tempDir(), "run.jsonl"), { stream });
    log.progress(state);
    log.warn("something", { step: 3 });
    log.close();
    expect(text()).toBe("s2s-train: warning: something  step=3\n");
    const quiet = new RunLog(path.join(tempDir(), "run.jsonl"), false);
    quiet.info("only in the file");
    quiet.close();
  });
});
