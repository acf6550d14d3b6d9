// Documents to model in one run folder (runPipeline): synth mhqa with a scripted LLM on loopback,
// curation answering through the same server, LoRA training of a tiny fixture model, evaluation;
// a second run skips every finished stage, and removing a stage's output runs that stage again.
// Then the "How we know": synth mhqa against `s2s-train serve` (startServer) on loopback
// as the real LLM server, with a tiny random model whose answers are nonsense.
import { afterEach, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import YAML from "yaml";
import { loadPipelineConfig } from "../src/synth/pipeline-config.js";
import { runPipeline } from "../src/synth/run-pipeline.js";
import { loadSynthConfig } from "../src/synth/config.js";
import { runSynth } from "../src/synth/run-synth.js";
import { startServer, type RunningServer } from "../src/serve/server.js";
import { OpenAiEndpoint } from "../src/llm/openai-endpoint.js";
import { schemaName, startChatServer, userText, type ChatServer } from "./synth/fake-servers.js";
import { mhqaResponder, townWorldDocuments, townWorldScript } from "./synth/scripted-llm.js";

const models = path.resolve(import.meta.dirname, "fixtures/models");
const closers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((s) => s.close()));
});
const tmp = () => mkdtempSync(path.join(tmpdir(), "s2s-pipeline-"));
const readJsonl = (file: string) => readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

/** The town world's LLM; as the curation model it answers every question right except those whose answer is a number. */
function scriptedServer(runDir: () => string): Promise<ChatServer> {
  const generate = mhqaResponder(townWorldScript);
  let answers: Map<string, string> | undefined;
  return startChatServer((body) => {
    if (schemaName(body)) return generate(body);
    answers ??= new Map(readJsonl(path.join(runDir(), "synth", "data.jsonl")).map((r) => [String(r.input), String(r.answer)]));
    const answer = answers.get(userText(body));
    if (answer === undefined) throw new Error(`not a generated question: ${userText(body)}`);
    return { content: `Q1 first, then Q2.\nSo the answer is: ${/^\d+$/.test(answer) ? "nobody knows" : answer}` };
  });
}

function writePipeline(dir: string, llmUrl: string, extra: Record<string, unknown> = {}): string {
  writeFileSync(path.join(dir, "docs.jsonl"), townWorldDocuments().map((d) => JSON.stringify(d)).join("\n") + "\n");
  writeFileSync(path.join(dir, "heldout.jsonl"), [
    { input: "Which river did Person Amber cross on foot?", target: "River Amber" },
    { input: "How many inhabitants does Town Birch have?", target: "1201" },
    { input: "Who founded the market town Town Cedar?", target: "Person Cedar" },
  ].map((r) => JSON.stringify(r)).join("\n") + "\n");
  const file = path.join(dir, "towns.yaml");
  writeFileSync(file, YAML.stringify({
    task: "mhqa",
    synth: {
      source: { type: "local", path: "docs.jsonl" },
      llm: { endpoints: [{ url: llmUrl, model: "scripted", concurrency: 2 }] },
      mhqa: { count: 8, seed: 3, min_chars: 20 },
      curate: { slice0_ratio: 0.25, seed: 2, k: 2, answer_with: { endpoints: [{ url: llmUrl, model: "scripted" }] } },
    },
    train: {
      model: { path: path.join(models, "llama-gqa"), method: "lora" },
      data: { batch_size: 2, valid_ratio: 0 },
      train: { max_steps: 3, lr: 1e-2, logging_steps: 1 },
    },
    eval: { data: "heldout.jsonl", metrics: "em,f1", max_new_tokens: 4 },
    ...extra,
  }));
  return file;
}

describe("s2s-train synth pipeline", () => {
  it("runs synth → curate → train → eval into one run folder, then skips what is finished", async () => {
    const dir = tmp();
    const llm = await scriptedServer(() => path.join(dir, "runs", "towns"));
    closers.push(llm);
    const config = loadPipelineConfig(writePipeline(dir, llm.url));
    expect(config.runDir).toBe(path.join(dir, "runs", "towns"));  // runs/<config file name>, next to the file
    const logs: string[] = [];
    const result = await runPipeline({ config, progress: false, log: (l) => logs.push(l) });
    const run = config.runDir;

    expect(result.status).toBe("completed");
    expect(Object.fromEntries(Object.entries(result.stages).map(([k, v]) => [k, v.status])))
      .toEqual({ synth: "ran", curate: "ran", train: "ran", eval: "ran" });
    // synth: the town world makes a kept two-hop question from every seed.
    const data = readJsonl(path.join(run, "synth", "data.jsonl"));
    expect(data).toHaveLength(8);
    // curate: slice 1's questions with a town-name answer are kept, the numeric ones never answered.
    const slice0 = readJsonl(path.join(run, "synth", "curate", "slice0.jsonl")).map((r) => r.input);
    expect(slice0).toHaveLength(2);
    const slice1 = data.filter((r) => !slice0.includes(r.input));
    const answerable = slice1.filter((r) => !/^\d+$/.test(String(r.answer)));
    expect(answerable.length).toBeGreaterThan(0);
    const curated = readJsonl(path.join(run, "synth", "curated.jsonl"));
    expect(curated.map((r) => r.input).sort()).toEqual(answerable.map((r) => r.input).sort());
    const report = JSON.parse(readFileSync(path.join(run, "synth", "report.json"), "utf8"));
    expect(report.kept).toBe(answerable.length);
    expect(report.rejected).toEqual(slice1.length > answerable.length ? { never_answered: slice1.length - answerable.length } : {});
    // train: the trainer's run at the run folder's top level, on the curated rows, LoRA on the fixture.
    const trainConfig = YAML.parse(readFileSync(path.join(run, "config.yaml"), "utf8"));
    expect(trainConfig.data.train_file).toBe(path.join(run, "synth", "curated.jsonl"));
    expect(trainConfig.output.dir).toBe(run);
    expect(result.train!.globalStep).toBe(3);
    expect(existsSync(path.join(run, "final", "adapter_config.json"))).toBe(true);
    expect(result.model).toEqual({ model: path.join(models, "llama-gqa"), adapter: path.join(run, "final") });
    // eval: every held-out row predicted and scored.
    expect(readJsonl(path.join(run, "eval", "predictions.jsonl"))).toHaveLength(3);
    const metrics = JSON.parse(readFileSync(path.join(run, "eval", "metrics.json"), "utf8"));
    expect(metrics).toMatchObject({ count: 3, model: path.join(models, "llama-gqa"), adapter: path.join(run, "final"), data: path.join(dir, "heldout.jsonl") });
    expect(Object.keys(metrics.scores).sort()).toEqual(["em", "f1"]);

    // Again: every stage is finished, nothing is asked of the LLM, nothing trained.
    const requests = llm.bodies.length;
    const checkpointsBefore = readFileSync(path.join(run, "logs", "train.csv"), "utf8");
    const again = await runPipeline({ config, progress: false, log: () => {} });
    expect(Object.values(again.stages).map((s) => s.status)).toEqual(["skipped", "skipped", "skipped", "skipped"]);
    expect(llm.bodies.length).toBe(requests);
    expect(readFileSync(path.join(run, "logs", "train.csv"), "utf8")).toBe(checkpointsBefore);

    // Without its output, a stage runs again (and only that one here: it is the last).
    rmSync(path.join(run, "eval"), { recursive: true });
    const evalOnly = await runPipeline({ config, progress: false, log: () => {} });
    expect(Object.values(evalOnly.stages).map((s) => s.status)).toEqual(["skipped", "skipped", "skipped", "ran"]);
    expect(existsSync(path.join(run, "eval", "metrics.json"))).toBe(true);

    // Other training settings: training starts over (from step 0, to the new step count), then eval.
    const longer = { ...config, train: { ...config.train, train: { max_steps: 4, lr: 1e-2, logging_steps: 1 } } };
    const retrained = await runPipeline({ config: longer, progress: false, log: () => {} });
    expect(Object.values(retrained.stages).map((s) => s.status)).toEqual(["skipped", "skipped", "ran", "ran"]);
    expect(retrained.train!.globalStep).toBe(4);
    expect(readFileSync(path.join(run, "logs", "train.csv"), "utf8").trim().split("\n")).toHaveLength(1 + 4);  // header + steps 1-4 of one run
    expect(llm.bodies.length).toBe(requests);

    // More seeds: synth adds items, and curation starts over on the whole new set.
    const more = { ...longer, synth: { ...longer.synth, mhqa: { ...longer.synth.mhqa, count: 12 } } };
    const grown = await runPipeline({ config: more, progress: false, log: () => {} });
    expect(Object.values(grown.stages).map((s) => s.status)).toEqual(["ran", "ran", "ran", "ran"]);
    expect(readJsonl(path.join(run, "synth", "data.jsonl"))).toHaveLength(12);
    expect(grown.curate!.report.stages.curate!.items + grown.curate!.report.slice0!).toBe(12);
    expect(readJsonl(path.join(run, "synth", "curate", "slice0.jsonl"))).toHaveLength(3);
  });

  it("resumes an interrupted training from its checkpoint, without redoing synth or curation", async () => {
    const dir = tmp();
    const llm = await scriptedServer(() => path.join(dir, "runs", "towns"));
    closers.push(llm);
    const config = loadPipelineConfig(writePipeline(dir, llm.url, {
      train: {
        model: { path: path.join(models, "llama-gqa"), method: "lora" },
        data: { batch_size: 1, valid_ratio: 0 },
        train: { max_steps: 4, lr: 1e-2, save_steps: 1 },
      },
    }));
    // Stop during training, once the first checkpoint is saved (as SIGINT would).
    const abort = new AbortController();
    const first = await runPipeline({
      config, progress: false, signal: abort.signal, log: () => {},
      trainEvents: { onCheckpoint: (e) => { if (e.step === 1) abort.abort(new Error("stop")); } },
    });
    expect(first.status).toBe("interrupted");
    expect(first.interruptedAt).toBe("train");
    expect(first.train!.globalStep).toBeLessThan(4);
    expect(existsSync(path.join(config.runDir, "final"))).toBe(false);
    const requests = llm.bodies.length;

    const logs: string[] = [];
    const second = await runPipeline({ config, progress: false, log: (l) => logs.push(l) });
    expect(second.status).toBe("completed");
    expect(Object.values(second.stages).map((s) => s.status)).toEqual(["skipped", "skipped", "ran", "ran"]);
    expect(logs.some((l) => /^train: .*\(resuming\)$/.test(l)), logs.join("\n")).toBe(true);
    expect(second.train!.globalStep).toBe(4);
    expect(llm.bodies.length).toBe(requests);
  });

  it("checks the config before any work: unknown keys, paths it sets, curation of relations", () => {
    const dir = tmp();
    const write = (value: unknown) => {
      const file = path.join(dir, "p.yaml");
      writeFileSync(file, YAML.stringify(value));
      return file;
    };
    const train = { model: { path: "m" } };
    expect(() => loadPipelineConfig(write({ train, trian: {} }))).toThrow(/p\.yaml[\s\S]*trian/);
    expect(() => loadPipelineConfig(write({ train, synth: { mhqa: { cuont: 3 } } }))).toThrow(/section synth[\s\S]*cuont/);
    expect(() => loadPipelineConfig(write({ train: { ...train, data: { train_file: "x.jsonl" } } }))).toThrow(/train\.data\.train_file: set by the pipeline/);
    expect(() => loadPipelineConfig(write({ train: { ...train, output: { dir: "x" } } }))).toThrow(/train\.output/);
    expect(() => loadPipelineConfig(write({ task: "relations", curate: true, train }))).toThrow(/relations rows have none/);
    expect(loadPipelineConfig(write({ task: "relations", train })).curate).toBe(false);
    expect(() => loadPipelineConfig(write({}))).toThrow(/train/);
  });

  it("on the command line: needs --config, takes the synth settings from it only, names a bad file", () => {
    const cli = (args: string[]) => spawnSync(process.execPath, [path.resolve(import.meta.dirname, "../dist/src/cli/main.js"), "synth", "pipeline", ...args], { encoding: "utf8" });
    expect(cli([]).stderr).toMatch(/--config FILE is required/);
    const dir = tmp();
    const file = path.join(dir, "p.yaml");
    writeFileSync(file, YAML.stringify({ train: { model: { path: "m" } }, eval: { metrics: "em" } }));
    expect(cli(["--config", file, "--endpoint", "http://127.0.0.1:1/v1"]).stderr).toMatch(/--endpoint: set these in the config's synth section/);
    const bad = cli(["--config", file]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/p\.yaml[\s\S]*eval\.data/);
  });

  it("refuses a bad training section before asking the LLM anything", async () => {
    const dir = tmp();
    const llm = await scriptedServer(() => path.join(dir, "runs", "towns"));
    closers.push(llm);
    const config = loadPipelineConfig(writePipeline(dir, llm.url, { train: { model: { path: "m" }, train: { lr: "fast" } } }));
    await expect(runPipeline({ config, progress: false, log: () => {} })).rejects.toThrow(/towns\.yaml: train: [\s\S]*train\.lr/);
    expect(llm.bodies).toHaveLength(0);
  });
});

// ChatML-like, with role words from the fixture's w<id> vocabulary.
const CHAT_TEMPLATE = "{% for m in messages %}w2 {{ m.content }} w3 {% endfor %}{% if add_generation_prompt %}w4{% endif %}";

/** A copy of the llama fixture with a chat template (serve's chat endpoint needs one) and room for the synth prompts. */
function servedModel(dir: string): string {
  const model = path.join(dir, "tiny-llama");
  cpSync(path.join(models, "llama-gqa"), model, { recursive: true });
  const edit = (name: string, change: Record<string, unknown>) => {
    const file = path.join(model, name);
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), ...change }));
  };
  edit("tokenizer_config.json", { chat_template: CHAT_TEMPLATE });
  edit("config.json", { max_position_embeddings: 4096 });
  return model;
}

describe("synth mhqa against s2s-train serve on loopback", () => {
  it("completes the job through the server; every item kept or rejected with a reason", async () => {
    const dir = tmp();
    const serveLog: string[] = [];
    const server: RunningServer = await startServer({ model: servedModel(dir), port: 0, modelName: "tiny", log: (l) => serveLog.push(l) });
    closers.push(server);
    writeFileSync(path.join(dir, "docs.jsonl"), townWorldDocuments().map((d) => JSON.stringify(d)).join("\n") + "\n");
    const config = loadSynthConfig(undefined, {
      source: { type: "local", path: path.join(dir, "docs.jsonl") },
      llm: { endpoints: [{ url: server.url, model: "tiny", concurrency: 2, timeout_s: 60 }], max_tokens: 12, temperature: 0.8 },
      mhqa: { count: 4, seed: 1, min_chars: 20 },
    });
    const out = path.join(dir, "run");
    const summary = await runSynth({ task: "mhqa", config, out, progress: false, log: () => {} });

    expect(summary.interrupted).toBe(false);
    const report = JSON.parse(readFileSync(path.join(out, "synth", "report.json"), "utf8"));
    const stage = report.stages.mhqa;
    expect(stage.items).toBe(4);
    expect(stage.unfinished).toBe(0);
    const rejectedCount = Object.values(report.rejected as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(report.kept + rejectedCount).toBe(4);
    const rejected = readJsonl(path.join(out, "synth", "rejected.jsonl"));
    expect(rejected).toHaveLength(rejectedCount);
    for (const r of rejected) {
      expect(typeof r.reason).toBe("string");
      expect(String(r.detail ?? "").length).toBeGreaterThan(0);
    }
    // The requests reached the server: serve answered response_format requests it could not
    // satisfy with a 400, the client then asked without response_format and validated the output itself.
    const chat = serveLog.filter((l) => l.startsWith("POST /v1/chat/completions "));
    expect(chat.filter((l) => / 400 /.test(l)).length).toBeGreaterThanOrEqual(1);
    expect(chat.filter((l) => / 200 /.test(l)).length).toBeGreaterThanOrEqual(4);
    expect(summary.endpoints[0]!.requests).toBeGreaterThanOrEqual(4);
    expect(summary.endpoints[0]!.completionTokens).toBeGreaterThan(0);
    // Nonsense output is a rejection with a reason, not an endpoint error: the endpoint stayed in the pool.
    expect(stage.failed).toBe(0);
    expect(summary.endpoints[0]!.disabled).toBeUndefined();
  }, 120_000);

  it("every request in flight when the server refuses response_format falls back to plain output", async () => {
    // Both requests are sent with response_format before either 400 arrives.
    const server = await startChatServer((body) =>
      body.response_format
        ? { status: 400, delayMs: 30, body: { error: { message: "response_format: the output is not valid JSON", code: "response_format_not_satisfied" } } }
        : { content: '{"ok": true}' });
    closers.push(server);
    const endpoint = new OpenAiEndpoint({ url: server.url, model: "m", timeoutMs: 5000 });
    const ask = () => endpoint.complete({ messages: [{ role: "user", content: "hi" }], jsonSchema: { name: "ok", schema: { type: "object" } } });
    const answers = await Promise.all([ask(), ask()]);
    expect(answers.map((a) => a.text)).toEqual(['{"ok": true}', '{"ok": true}']);
    expect(server.bodies.map((b) => b.response_format?.type ?? "none")).toEqual(["json_schema", "json_schema", "none", "none"]);
    expect(endpoint.structuredOutputMode).toBe("none");
  }, 120_000);
});
