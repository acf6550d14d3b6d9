// The command line, run as a user would run it (the compiled dist/ that `npm test` builds).
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");

function s2s(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
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
});
