// The training config: precedence (defaults < file < flags < dotted overrides), relative paths,
// every kind of error (each naming where the value came from, the key and what was expected),
// `init`'s commented default, and the resolved config a run writes.
import { describe, expect, it } from "vitest";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { ConfigError, resolveConfig } from "../src/config/load.js";
import { editDistance, closest } from "../src/config/closest.js";
import { runInit, defaultConfig } from "../src/config/init-run.js";
import { bundledConfigFile } from "../src/config/bundled.js";
import { resolveTrainConfig } from "../src/train/run-train.js";
import { renderConfigYaml } from "../src/config/render.js";
import { tempDir } from "./train-helpers.js";

function writeConfig(text: string, name = "config.yaml"): string {
  const dir = tempDir();
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const REQUIRED = ["model.path=m", "data.train_file=d.jsonl"];

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe("S2S_CONFIG");
    return (e as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("config precedence", () => {
  it("defaults < file < flags < dotted overrides", () => {
    const file = writeConfig("model:\n  path: ./model\ndata:\n  train_file: train.jsonl\n  batch_size: 4\ntrain:\n  lr: 1.0e-3\n  seed: 7\n");
    const fromFile = resolveConfig({ file });
    expect(fromFile.train.lr).toBe(1e-3);          // file over default (5e-5)
    expect(fromFile.train.seed).toBe(7);
    expect(fromFile.train.epochs).toBe(3);         // default kept
    expect(fromFile.data.batch_size).toBe(4);
    expect(fromFile.data.input_field).toBe("input");  // the data section's own defaults

    const withFlags = resolveConfig({ file, flags: { "train.lr": 2e-3, "data.batch_size": undefined } });
    expect(withFlags.train.lr).toBe(2e-3);         // flag over file
    expect(withFlags.data.batch_size).toBe(4);     // an absent flag changes nothing

    const all = resolveConfig({ file, flags: { "train.lr": 2e-3 }, overrides: ["train.lr=3e-5", "data.batch_size=8", "model.lora.target_modules=[c_attn, c_fc]"] });
    expect(all.train.lr).toBe(3e-5);               // dotted override over flag
    expect(all.data.batch_size).toBe(8);
    expect(all.train.seed).toBe(7);
    expect(all.model.lora.target_modules).toEqual(["c_attn", "c_fc"]);

    // An object from TypeScript sits under the file.
    const withValues = resolveConfig({ values: { train: { lr: 9, epochs: 5 } }, file });
    expect(withValues.train.lr).toBe(1e-3);
    expect(withValues.train.epochs).toBe(5);
  });

  it("resolves paths: from a file against its folder, from the command line against the working folder", () => {
    const file = writeConfig("model:\n  path: ./model\ndata:\n  train_file: ../data/train.jsonl\noutput:\n  dir: .\n");
    const dir = path.dirname(file);
    const c = resolveConfig({ file, cwd: "/somewhere" });
    expect(c.model.path).toBe(path.join(dir, "model"));
    expect(c.data.train_file).toBe(path.resolve(dir, "../data/train.jsonl"));
    expect(c.output.dir).toBe(dir);
    const o = resolveConfig({ file, cwd: "/somewhere", overrides: ["model.path=other", "output.dir=runs/x"] });
    expect(o.model.path).toBe("/somewhere/other");
    expect(o.output.dir).toBe("/somewhere/runs/x");
    expect(resolveConfig({ overrides: REQUIRED, cwd: "/w" }).output.dir).toBe("/w/runs/default");
  });
});

describe("config errors", () => {
  it("an unknown key names the closest valid one, in a file with its line and on the command line", () => {
    const file = writeConfig("model:\n  path: m\ndata:\n  train_file: d\ntrain:\n  lr: 1e-4\n  warmup_step: 10\n");
    const p = problems(() => resolveConfig({ file }));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/config\.yaml:7: unknown key train\.warmup_step \(did you mean train\.warmup_steps\?\)/);
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "trian.lr=1"] }))[0])
      .toBe("command line (trian.lr=1): unknown key trian (did you mean train?)");
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "data.batchsize=2"] }))[0])
      .toContain("unknown key data.batchsize (did you mean data.batch_size?)");
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "model.lora.alfa=2"] }))[0])
      .toContain("unknown key model.lora.alfa (did you mean model.lora.alpha?)");
  });

  it("a wrong type or value names the key, the expectation and the value", () => {
    const file = writeConfig("model:\n  path: m\n  dtype: float8\ndata:\n  train_file: d\ntrain:\n  lr: fast\n  epochs: 0\n");
    const p = problems(() => resolveConfig({ file }));
    expect(p).toHaveLength(3);
    expect(p.find((x) => x.includes("model.dtype"))).toMatch(/config\.yaml:3: model\.dtype: .*"float32"\|"bfloat16"\|"float16".*\(got "float8"\)/);
    expect(p.find((x) => x.includes("train.lr"))).toMatch(/config\.yaml:7: train\.lr: .*expected number.*\(got "fast"\)/);
    expect(p.find((x) => x.includes("train.epochs"))).toMatch(/config\.yaml:8: train\.epochs: .*>0.*\(got 0\)/);
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "train.betas=[0.9]"] }))[0]).toMatch(/command line \(train\.betas=\[0\.9\]\): train\.betas/);
  });

  it("a missing required key says how to set it", () => {
    const p = problems(() => resolveConfig({}));
    expect(p).toEqual([
      "model.path: required, but not set (set it in the config file, or on the command line as model.path=...)",
      "data.train_file: required, but not set (set it in the config file, or on the command line as data.train_file=...)",
    ]);
  });

  it("malformed overrides", () => {
    expect(problems(() => resolveConfig({ overrides: ["train.lr"] }))[0]).toMatch(/"train\.lr" is not an override; expected section\.key=value/);
    expect(problems(() => resolveConfig({ overrides: ["=3"] }))[0]).toMatch(/not an override/);
    expect(problems(() => resolveConfig({ overrides: ["train..lr=3"] }))[0]).toMatch(/not an override/);
    expect(problems(() => resolveConfig({ overrides: ["train.lr=[1"] }))[0]).toMatch(/train\.lr: the value "\[1" is not valid YAML/);
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "train.lr=1", "train.lr.x=2"] }))[0])
      .toMatch(/command line \(train\.lr\.x=2\): train\.lr is a value, not a section, so it has no key "x"/);
  });

  it("files that cannot be read as a config", () => {
    expect(problems(() => resolveConfig({ file: "/nonexistent/config.yaml" }))[0]).toBe("/nonexistent/config.yaml: file not found");
    expect(problems(() => resolveConfig({ file: writeConfig("model:\n  path: [unclosed\n") }))[0]).toMatch(/config\.yaml:\d+:\d+: not valid YAML/);
    expect(problems(() => resolveConfig({ file: writeConfig("- a\n- b\n") }))[0]).toMatch(/expected a mapping of sections .* got a list/);
    expect(problems(() => resolveConfig({ file: writeConfig("train:\n  lr: 1\n  lr: 2\n") }))[0]).toMatch(/not valid YAML .*[Mm]ap keys must be unique/);
  });

  it("rules between keys", () => {
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "train.warmup_steps=5", "train.warmup_ratio=0.1"] }))[0])
      .toMatch(/train\.warmup_ratio: set either warmup_steps or warmup_ratio, not both/);
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "train.load_best_model_at_end=true", "train.eval_steps=4", "train.save_steps=6"] }))[0])
      .toMatch(/train\.save_steps: with load_best_model_at_end, save_steps \(6\) must be a multiple of eval_steps \(4\)/);
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "train.load_best_model_at_end=true", "train.eval_steps=4"] }))[0])
      .toMatch(/train\.save_steps: with load_best_model_at_end, set both eval_steps and save_steps, or neither/);
    expect(problems(() => resolveConfig({ overrides: [...REQUIRED, "model.method=full", "model.lora.r=4"] }))[0])
      .toBe("command line (model.lora.r=4): model.lora.r is set, but model.method is full (LoRA settings apply only to method: lora)");
    // The default LoRA section (init writes every key) is fine under method: full.
    const { configFile } = runInit({ name: "full", cwd: tempDir() });
    expect(resolveConfig({ file: configFile, overrides: ["model.method=full"] }).model.method).toBe("full");
  });

  it("every problem is reported at once", () => {
    const p = problems(() => resolveConfig({ overrides: ["train.lrr=1", "train.epochs=-1", "output.dirr=x"] }));
    expect(p).toHaveLength(5);  // two required keys, two unknown keys, one bad value
  });
});

describe("edit distance", () => {
  it("counts insertions, deletions and substitutions", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("lr", "lr")).toBe(0);
    expect(closest("warmup_step", ["warmup_steps", "warmup_ratio", "weight_decay"])).toBe("warmup_steps");
    expect(closest("x", [])).toBeUndefined();
  });
});

describe("init and the written config", () => {
  it("init writes every key with its help text, and the file resolves to the default config", () => {
    const cwd = tempDir();
    mkdirSync(path.join(cwd, "models/m"), { recursive: true });
    const r = runInit({ name: "first-run", cwd, model: "models/m", trainFile: "data/train.jsonl" });
    expect(r.configFile).toBe(path.join(cwd, "runs/first-run/config.yaml"));
    const text = readFileSync(r.configFile, "utf8");
    expect(text).toContain("# Peak learning rate (AdamW)\n  lr: 0.00005");
    expect(text).toContain("path: ../../models/m");
    const c = resolveConfig({ file: r.configFile, cwd: "/elsewhere" });
    expect(c.model.path).toBe(path.join(cwd, "models/m"));
    expect(c.data.train_file).toBe(path.join(cwd, "data/train.jsonl"));
    expect(c.output.dir).toBe(path.join(cwd, "runs/first-run"));
    expect(c.train).toEqual(defaultConfig(r.dir, "m", "t").train);
    expect(() => runInit({ name: "first-run", cwd })).toThrow(/already exists .*--force/);
    expect(() => runInit({ name: "first-run", cwd, force: true })).not.toThrow();
    expect(() => runInit({ name: "../escape", cwd })).toThrow(/expected letters, digits/);
  });

  it("init with no model writes the bundled default, its paths pointing into the package", () => {
    const cwd = tempDir();
    const r = runInit({ name: "numbers", cwd });
    const c = resolveConfig({ file: r.configFile, cwd: "/elsewhere" });
    const bundled = resolveConfig({ file: bundledConfigFile("default") });
    expect(c.model).toEqual(bundled.model);
    expect(c.model.from_scratch).toBe(true);
    expect(c.data).toEqual(bundled.data);
    expect(c.train).toEqual(bundled.train);
    expect(c.output.dir).toBe(path.join(cwd, "runs/numbers"));
  });

  it("train with no --config runs the bundled default into runs/default; --example picks another", () => {
    const cwd = process.cwd();
    const c = resolveTrainConfig({});
    expect(c.model.from_scratch).toBe(true);
    expect(c.output.dir).toBe(path.join(cwd, "runs/default"));
    const lora = resolveTrainConfig({ example: "default-lora", flags: { "model.path": "runs/default/final" } });
    expect(lora.model.method).toBe("lora");
    expect(lora.model.path).toBe(path.join(cwd, "runs/default/final"));
    expect(lora.output.dir).toBe(path.join(cwd, "runs/default-lora"));
    expect(() => resolveTrainConfig({ example: "default-lora" })).toThrow(/model\.path/);
    expect(() => resolveTrainConfig({ example: "nope" })).toThrow(/no such bundled config \(there are: default, default-lora\)/);
    expect(() => resolveTrainConfig({ example: "default", config: "x.yaml" })).toThrow(/give one of them/);
    expect(() => resolveConfig({ overrides: [...REQUIRED, "model.from_scratch=true"] })).toThrow(/needs method: full/);
    // Naming a model or data without a config is the user's own run, never the example's.
    const own = resolveTrainConfig({ overrides: REQUIRED });
    expect(own.model.from_scratch).toBe(false);
    expect(own.model.method).toBe("lora");
  });

  it("a rendered config parses back to the same values", () => {
    const c = resolveConfig({ overrides: [...REQUIRED, "train.betas=[0.8, 0.95]", "model.lora.target_modules=all-linear"] });
    expect(YAML.parse(renderConfigYaml(c))).toEqual(c);
  });
});
