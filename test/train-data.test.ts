// train() without prepared examples reads config.data through src/data: a data file in, a run
// out; a bad row stops it before the model loads or the run folder is made.
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { train } from "../src/index.js";
import { fixtures, tempDir, writeFiles } from "./data-helpers.js";

describe("train() from a data file", () => {
  const dir = tempDir("s2s-train-data-");
  const rows = Array.from({ length: 24 }, (_, i) => JSON.stringify({ input: `w${3 + i} w${4 + i}`, target: `w${4 + i} w${3 + i}` }));
  writeFiles(dir, {
    "pairs.jsonl": rows.join("\n") + "\n",
    "bad.jsonl": `${rows[0]}\n{"input": "w3"}\n`,
  });
  const config = (file: string, out: string) => ({
    model: { path: path.join(fixtures, "t5-relu-tied"), method: "full" as const },
    data: { train_file: path.join(dir, file), batch_size: 4, valid_ratio: 0.25 },
    train: { max_steps: 3, eval_steps: 3, save_steps: 3, lr: 1e-3 },
    output: { dir: path.join(dir, out) },
  });

  it("prepares the examples, trains and evaluates on the held-out split", async () => {
    const result = await train({ config: config("pairs.jsonl", "run") });
    expect(result.status).toBe("completed");
    expect(result.globalStep).toBe(3);
    const valid = readFileSync(path.join(dir, "run/logs/valid.csv"), "utf8").trim().split("\n");
    expect(valid).toHaveLength(2);  // header + the evaluation at step 3
    const log = readFileSync(path.join(dir, "run/logs/run.jsonl"), "utf8");
    expect(log).toMatch(/"rows":24/);
  });

  it("a bad row is an error naming file:line, before the run folder exists", async () => {
    await expect(train({ config: config("bad.jsonl", "bad-run") })).rejects.toThrow(/bad\.jsonl:2: missing field 'target'/);
    expect(existsSync(path.join(dir, "bad-run"))).toBe(false);
  });
});
