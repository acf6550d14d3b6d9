// The command line, run as a user would run it (the compiled dist/ that `npm test` builds).
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");

function s2s(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
}

function s2sIn(cwd: string, ...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", cwd });
}

// dist/ is built by `npm test` (scripts/test.mjs) before vitest runs.
describe("s2s-train CLI", () => {
  it("is built", () => expect(existsSync(cli), `${cli} missing: run npm run build`).toBe(true));

  it("doctor prints what a bug report needs", () => {
    const r = s2s("doctor");
    expect(r.status).toBe(0);
    for (const field of ["package", "node", "compiler", "backends", "cpu features", "active path", "kernel gemm_f32", "kernel activations", "threads"]) {
      expect(r.stdout).toContain(field);
    }
  });

  it("doctor --json is machine-readable", () => {
    const r = s2s("doctor", "--json");
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.native.backends).toContain("cpu");
    expect(report.native.supportedIsas).toContain(report.native.activeIsa);
  });

  it("an unknown command fails with help and a non-zero exit", () => {
    const r = s2s("frobnicate");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("Unknown");
  });

  it("init creates runs/<name>/config.yaml and refuses to overwrite it", () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), "s2s-cli-"));
    const r = s2sIn(cwd, "init", "my-run");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(path.join(cwd, "runs/my-run/config.yaml"));
    expect(readFileSync(path.join(cwd, "runs/my-run/config.yaml"), "utf8")).toContain("# The training loop\ntrain:");
    const again = s2sIn(cwd, "init", "my-run");
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("already exists");
  });

  it("train reports config errors with the key and the closest valid one", () => {
    const r = s2s("train", "model.path=x", "data.train_file=y", "train.lrr=1");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("command line (train.lrr=1): unknown key train.lrr (did you mean train.lr?)");
    const flag = s2s("train", "--lrr", "1");
    expect(flag.status).toBe(1);
    expect(flag.stderr).toContain("Unknown argument: --lrr (did you mean --lr?)");
    expect(flag.stderr).not.toContain("required, but not set");  // no handler runs after a usage error
    const dtype = s2s("train", "--dtype", "float8", "model.path=x", "data.train_file=y");
    expect(dtype.status).toBe(1);
    expect(dtype.stderr).toMatch(/model\.dtype: .*"float16".*\(got "float8"\)/);
  });
});
