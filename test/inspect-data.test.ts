// `s2s-train inspect-data`: runInspectData from a config file or --model/--data, and the command
// itself (dist/, built by npm test).
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { runInspectData } from "../src/data/inspect.js";
import { fixtures, tempDir, writeFiles } from "./data-helpers.js";

const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");
const example = path.resolve(import.meta.dirname, "../examples/number-words");

describe("inspect-data", () => {
  const dir = tempDir();
  writeFiles(dir, {
    "data/qa.jsonl": '{"q": "w3 w4", "a": "w5"}\n{"q": "w6"}\n{"q": "w7", "a": "w8 w9"}\n',
    "run.yaml": [
      "model:",
      `  path: ${path.join(fixtures, "llama-gqa")}`,
      "data:",
      "  train_file: data/qa.jsonl",
      "  input_field: q",
      "  target_field: a",
      '  prompt_template: "{q} w90"',
      "  on_bad_row: skip",
      "  valid_ratio: 0",
    ].join("\n"),
    "typo.yaml": "model:\n  path: x\ndata:\n  train_file: a.jsonl\n  batch_sise: 4\n",
  });

  it("from a config: the report, then each example's tokens split into no-loss and loss runs", async () => {
    const text = await runInspectData({ config: path.join(dir, "run.yaml"), n: 2 });
    expect(text).toContain("data (causal): 3 rows -> 2 train, 0 valid; 1 skipped; truncated: 0 inputs, 0 targets");
    expect(text).toMatch(/skipped .*qa\.jsonl:2: missing field 'a' \(target_field\)/);
    expect(text).toContain("tokens (6, loss on 2; prompt 4):\n    no loss  <s> w3 w4 w90\n    loss     w5 </s>");
    expect(text).toContain("    no loss  <s> w7 w90\n    loss     w8 w9 </s>");
  });

  it("from --model and --data: seq2seq encoder tokens and labels", async () => {
    const text = await runInspectData({
      model: path.join(example, "model"), data: path.join(example, "data/words-to-digits.jsonl"), n: 1, split: "valid",
    });
    expect(text).toMatch(/^data \(seq2seq\): 10000 rows -> \d+ train, \d+ valid; 0 skipped/);
    expect(text).toMatch(/\[1\] valid .*words-to-digits\.jsonl:\d+/);
    expect(text).toMatch(/labels {2}\(\d+ tokens, all loss\): {2}(\S+ )+<\/s>/);
  });

  it("a config with an unknown data key names the file:line, the key and the closest one", async () => {
    await expect(runInspectData({ config: path.join(dir, "typo.yaml") })).rejects.toThrow(/typo\.yaml:5: .*batch_sise.*data\.batch_size/);
  });

  it("the command prints the examples, and fails once with the reason", () => {
    const ok = spawnSync(process.execPath, [cli, "inspect-data", "--config", path.join(dir, "run.yaml"), "-n", "1"], { encoding: "utf8" });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain("[1] train");
    expect(ok.stdout).not.toContain("[2]");
    const bad = spawnSync(process.execPath, [cli, "inspect-data", "--config", path.join(dir, "run.yaml"), "--on-bad-row", "error"], { encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split("\n")).toEqual([expect.stringMatching(/qa\.jsonl:2: missing field 'a' \(target_field\).*\[S2S_DATA\]$/)]);
    const usage = spawnSync(process.execPath, [cli, "inspect-data", "--model", "x"], { encoding: "utf8" });
    expect(usage.status).toBe(1);
    expect(usage.stderr).toContain("Give --config FILE, or --model DIR and --data FILE");
  });
});
