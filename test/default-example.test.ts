// The embedded default (`npx s2s-train train` with no arguments: configs/default.yaml, a T5
// trained from scratch on the bundled number-words task), shortened for CI: the held-out exact
// match must climb from near nothing to most of the split, and `generate` must use the result.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { runTrain } from "../src/train/run-train.js";
import { Model } from "../src/models/model.js";
import { tempDir } from "./train-helpers.js";

describe("the embedded default", () => {
  it("learns number words -> digits from scratch: held-out exact match climbs past 85%", async () => {
    const dir = path.join(tempDir(), "default");
    // 900 steps instead of 1200, evaluated on 100 held-out rows at steps 300 and 900.
    const result = await runTrain({
      overrides: ["train.max_steps=900", "train.eval_steps=300", "train.save_steps=900", "train.max_eval_samples=100",
                  "train.logging_steps=100"],
      flags: { "output.dir": dir },
      train: { console: false },
    });
    expect(result.status).toBe("completed");
    const rows = readFileSync(path.join(dir, "logs/valid.csv"), "utf8").trim().split("\n");
    const header = rows[0]!.split(",");
    const em = rows.slice(1).map((r) => Number(r.split(",")[header.indexOf("em")]));
    expect(em).toHaveLength(3);
    expect(em[0]).toBeLessThan(50);
    expect(em[2]).toBeGreaterThanOrEqual(85);

    const model = await Model.load(path.join(dir, "final"));
    const out = await model.generate(["four thousand twelve", "nine hundred ninety nine"]);
    expect(out.sequences.map((s) => s.text?.trim())).toEqual(["4012", "999"]);
  }, 300_000);
});
