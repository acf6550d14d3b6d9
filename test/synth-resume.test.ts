// `s2s-train synth` as a user runs it (the compiled CLI in a child process): a job killed with
// SIGKILL and stopped with SIGINT in the middle resumes to exactly the output of a run that was
// never stopped, with no finished work requested again. Also the prompts subcommand and a config
// error.
import { afterEach, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import YAML from "yaml";
import { runSynth } from "../src/synth/run-synth.js";
import { loadSynthConfig } from "../src/synth/config.js";
import { startChatServer, type ChatServer } from "./synth/fake-servers.js";
import { mhqaResponder, requestKey, townWorldDocuments, townWorldScript } from "./synth/scripted-llm.js";

const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");
const closers: ChatServer[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((s) => s.close()));
});
const tmp = () => mkdtempSync(path.join(tmpdir(), "s2s-resume-"));

function writeJob(dir: string, llmUrl: string): string {
  const docs = path.join(dir, "docs.jsonl");
  writeFileSync(docs, townWorldDocuments().map((d) => JSON.stringify(d)).join("\n") + "\n");
  const config = path.join(dir, "synth.yaml");
  writeFileSync(config, YAML.stringify({
    source: { type: "local", path: "docs.jsonl" },
    llm: { endpoints: [{ url: llmUrl, model: "scripted", concurrency: 2 }] },
    mhqa: { count: 8, seed: 3, min_chars: 20 },
  }));
  return config;
}

/** Runs the CLI; `stop` decides, from the server's request count, when to send which signal. */
function runCli(args: string[], server: ChatServer, stop?: { after: number; signal: NodeJS.Signals }) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    const start = server.bodies.length;
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const timer = stop && setInterval(() => {
      if (server.bodies.length - start >= stop.after) {
        clearInterval(timer);
        child.kill(stop.signal);
      }
    }, 5);
    child.on("exit", (code, signal) => {
      if (timer) clearInterval(timer);
      resolve({ code, signal, stderr });
    });
  });
}

describe("resumable synth jobs", () => {
  it("is built", () => expect(existsSync(cli), `${cli} missing: run npm run build`).toBe(true));

  it("resumes after SIGKILL and SIGINT without losing or redoing finished work", async () => {
    // The run that is never stopped, for reference.
    const refServer = await startChatServer(mhqaResponder(townWorldScript));
    closers.push(refServer);
    const refDir = tmp();
    const refConfig = writeJob(refDir, refServer.url);
    await runSynth({ task: "mhqa", config: loadSynthConfig(refConfig), out: path.join(refDir, "run"), progress: false, log: () => {} });
    const reference = readFileSync(path.join(refDir, "run", "synth", "data.jsonl"), "utf8");
    expect(reference.trim().split("\n")).toHaveLength(8);

    const server = await startChatServer(mhqaResponder(townWorldScript, 30));
    closers.push(server);
    const dir = tmp();
    const config = writeJob(dir, server.url);
    const args = ["synth", "mhqa", "--config", config, "--out", path.join(dir, "run")];

    const killed = await runCli(args, server, { after: 5, signal: "SIGKILL" });
    expect(killed.signal).toBe("SIGKILL");
    expect(existsSync(path.join(dir, "run", "synth", "data.jsonl"))).toBe(false);

    const interrupted = await runCli(args, server, { after: 7, signal: "SIGINT" });
    expect(interrupted.code).toBe(1);
    expect(interrupted.stderr).toMatch(/interrupted; run the same command again to resume/);

    const finished = await runCli(args, server);
    expect(finished.stderr).toMatch(/mhqa: 8 items, kept 8, rejected 0, failed 0, unfinished 0/);
    expect(finished.code).toBe(0);

    // Nothing lost, nothing twice: the same rows as the uninterrupted run, in the same order.
    expect(readFileSync(path.join(dir, "run", "synth", "data.jsonl"), "utf8")).toBe(reference);
    // Finished steps were never requested again; only requests in flight when a stop came (at
    // most the concurrency, 2, per stop) may have been.
    const counts = new Map<string, number>();
    for (const b of server.bodies) counts.set(requestKey(b), (counts.get(requestKey(b)) ?? 0) + 1);
    const repeated = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
    expect(repeated).toBeLessThanOrEqual(4);
    expect(server.bodies.length).toBeLessThanOrEqual(refServer.bodies.length + 4);
    expect(counts.size).toBe(new Set(refServer.bodies.map(requestKey)).size);
    // The job folder is left clean: no lock, no temporary files.
    const files = readdirSync(path.join(dir, "run", "synth"));
    expect(files).not.toContain("job.lock");
    expect(files.filter((f) => f.includes(".tmp-"))).toEqual([]);
    const report = JSON.parse(readFileSync(path.join(dir, "run", "synth", "report.json"), "utf8"));
    expect(report).toMatchObject({ kept: 8, rejected: {} });
  });

  it("`synth prompts` copies the prompt files for editing", () => {
    const dir = tmp();
    const r = spawnSync(process.execPath, [cli, "synth", "prompts", "--out", dir], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(readdirSync(dir)).toContain("mhqa-entity-q1.md");
    expect(r.stdout).toMatch(/10 prompt files copied/);
  });

  it("a config error names the field and exits 1", () => {
    const dir = tmp();
    const config = path.join(dir, "bad.yaml");
    writeFileSync(config, YAML.stringify({ source: { type: "local", path: "x" }, mhqa: { cuont: 3 } }));
    const r = spawnSync(process.execPath, [cli, "synth", "mhqa", "--config", config, "--out", dir], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${config}: invalid:`);
    expect(r.stderr).toMatch(/mhqa: Unrecognized key: "cuont"/);
    const noLlm = path.join(dir, "nollm.yaml");
    writeFileSync(noLlm, YAML.stringify({ source: { type: "local", path: "x" } }));
    const r2 = spawnSync(process.execPath, [cli, "synth", "mhqa", "--config", noLlm, "--out", dir], { encoding: "utf8" });
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/llm.endpoints: list at least one OpenAI-compatible endpoint/);
  });
});
