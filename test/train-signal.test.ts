// SIGINT / SIGTERM during training, in a child process (runTrain, what `s2s-train train` runs):
// the run stops at the next step boundary, saves a whole checkpoint, says how to continue and
// exits with the shell's status for the signal; the checkpoint resumes.
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { readTrainerState } from "../src/train/trainer-state.js";
import { train } from "../src/train/trainer.js";
import { config, dataset, makeExamples, modelsRoot, tempDir } from "./train-helpers.js";

const child = path.resolve(import.meta.dirname, "fixtures/train/signal-child.mjs");
const dist = path.resolve(import.meta.dirname, "../dist/src/train/run-train.js");

function runUntilSignal(runDir: string, signal: NodeJS.Signals): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, runDir, path.join(modelsRoot, "gpt2")], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => p.kill("SIGKILL"), 50_000);
    p.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes("READY") && !p.killed) p.kill(signal);
    });
    p.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    p.on("error", reject);
    p.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe("signals", () => {
  it("is built", () => expect(existsSync(dist), `${dist} missing: run npm run build`).toBe(true));

  for (const [signal, status] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    it(`${signal} saves a checkpoint and exits with ${status}`, async () => {
      const dir = tempDir();
      const r = await runUntilSignal(dir, signal);
      expect(r.stdout).not.toContain("FINISHED");
      expect(r.stderr).toContain(`${signal}: stopping after the current step and saving a checkpoint`);
      expect(r.status).toBe(status);
      const names = readdirSync(path.join(dir, "checkpoints"));
      expect(names).toHaveLength(1);  // whole, no temporary folder left
      const step = Number(names[0]!.replace("checkpoint-", ""));
      expect(step).toBeGreaterThanOrEqual(3);
      expect(r.stderr).toContain(`stopped by ${signal} at step ${step}; saved ${path.join(dir, "checkpoints", names[0]!)}; continue with the same command and --resume`);
      expect(readTrainerState(path.join(dir, "checkpoints", names[0]!, "trainer_state.json")).global_step).toBe(step);

      // The checkpoint resumes (here to two more steps).
      const ex = makeExamples("causal", 8, 40);
      const resumed = await train({
        config: config("gpt2", dir, [`train.max_steps=${step + 2}`, "data.batch_size=4", "train.logging_steps=100000", "train.save_steps=100000"]),
        data: dataset("causal", ex, []), resume: true,
      });
      expect(resumed).toMatchObject({ status: "completed", globalStep: step + 2 });
    });
  }
});
