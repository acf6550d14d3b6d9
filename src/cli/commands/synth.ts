// `s2s-train synth <mhqa|relations|curate|prompts|pipeline>`: Source2Synth data in a resumable job;
// pipeline runs synth → curate → train → eval from one config into one run folder.
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import type { CommandModule } from "yargs";
import { loadSynthConfig } from "../../synth/config.js";
import { runSynth, type SynthTask } from "../../synth/run-synth.js";
import { bundledPromptsDir } from "../../synth/prompts.js";
import { loadPipelineConfig } from "../../synth/pipeline-config.js";
import { runPipeline } from "../../synth/run-pipeline.js";

interface SynthArgs {
  task: SynthTask | "prompts" | "pipeline";
  config?: string;
  out?: string;
  endpoint?: string[];
  model?: string;
  source?: string;
  count?: number;
  concurrency?: number;
  "retry-failed": boolean;
  json: boolean;
}

/** Command-line flags as a partial config, merged over the file. */
function overrides(args: SynthArgs): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (args.endpoint?.length) {
    o.llm = { endpoints: args.endpoint.map((url) => ({ url, ...(args.model ? { model: args.model } : {}) })) };
  }
  if (args.source) o.source = args.source === "wikipedia" ? { type: "wikipedia" } : { type: "local", path: path.resolve(args.source) };
  if (args.count !== undefined) o[args.task === "relations" ? "relations" : "mhqa"] = { count: args.count };
  if (args.concurrency !== undefined) o.job = { concurrency: args.concurrency };
  return o;
}

/** Copies the bundled prompts into `dir` for editing (existing files are left alone). */
export function copyPrompts(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const copied: string[] = [];
  const from = bundledPromptsDir();
  for (const name of readdirSync(from).filter((f) => f.endsWith(".md")).sort()) {
    const target = path.join(dir, name);
    if (existsSync(target)) continue;
    copyFileSync(path.join(from, name), target);
    copied.push(target);
  }
  return copied;
}

export const synthCommand: CommandModule<object, SynthArgs> = {
  command: "synth <task>",
  describe: "Make training data from documents (Source2Synth): mhqa, relations, curate; prompts copies the prompt files",
  builder: (y) =>
    y
      .positional("task", { choices: ["mhqa", "relations", "curate", "prompts", "pipeline"] as const, demandOption: true,
        describe: "mhqa: multi-hop QA; relations: entity/relation JSON; curate: filter by answerability; prompts: copy the prompts to --out; " +
          "pipeline: synth → curate → train → eval from one --config" })
      .option("config", { type: "string", describe: "YAML config (source, llm, mhqa/relations/curate, job; for pipeline: task, synth, train, eval)" })
      .option("out", { type: "string", describe: "Run folder (the job lives in <out>/synth; rerun to resume); default runs/synth, for pipeline the config's run_dir" })
      .option("endpoint", { type: "string", array: true, describe: "OpenAI-compatible base URL (repeat for several), e.g. http://127.0.0.1:8080/v1" })
      .option("model", { type: "string", describe: "Model name for --endpoint" })
      .option("source", { type: "string", describe: "'wikipedia', or a folder / .jsonl / .txt of documents" })
      .option("count", { type: "number", describe: "Seed documents (mhqa) or documents (relations)" })
      .option("concurrency", { type: "number", describe: "Items in flight" })
      .option("retry-failed", { type: "boolean", default: false, describe: "Retry items that failed with errors" })
      .option("json", { type: "boolean", default: false, describe: "Print the report as JSON" }) as never,
  handler: async (args) => {
    const out = args.out ?? "runs/synth";
    if (args.task === "prompts") {
      const copied = copyPrompts(path.resolve(out));
      process.stdout.write(`${copied.length} prompt files copied to ${path.resolve(out)}; set prompts_dir to use them\n`);
      return;
    }
    if (args.task === "pipeline") {
      if (!args.config) throw new Error("synth pipeline: --config FILE is required (a pipeline config with task, synth, train and eval sections)");
      const given = (["endpoint", "model", "source", "count", "concurrency"] as const).filter((k) => args[k] !== undefined);
      if (given.length || args["retry-failed"]) {
        throw new Error(`synth pipeline: ${[...given, ...(args["retry-failed"] ? ["retry-failed"] : [])].map((k) => `--${k}`).join(", ")}: set these in the config's synth section`);
      }
    }
    const abort = new AbortController();
    const stop = () => abort.abort(new Error("interrupted"));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    try {
      if (args.task === "pipeline") {
        const result = await runPipeline({ config: loadPipelineConfig(args.config!), ...(args.out ? { out: args.out } : {}), signal: abort.signal, console: true });
        if (args.json) process.stdout.write(JSON.stringify({ status: result.status, runDir: result.runDir, stages: result.stages, model: result.model }, null, 2) + "\n");
        if (result.status === "interrupted") throw new Error(`interrupted in ${result.interruptedAt}; run the same command again to resume ${result.runDir}`);
        return;
      }
      const config = loadSynthConfig(args.config, overrides(args));
      const summary = await runSynth({ task: args.task, config, out, retryFailed: args["retry-failed"], signal: abort.signal });
      if (args.json) process.stdout.write(JSON.stringify(summary.report, null, 2) + "\n");
      if (summary.interrupted) throw new Error(`interrupted; run the same command again to resume the job in ${summary.jobDir}`);
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  },
};
