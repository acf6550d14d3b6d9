// runSynth: one job of `s2s-train synth` in a run folder. Everything of the job lives in
// <out>/synth/: state.sqlite (the resumable state), config.yaml (as resolved), data.jsonl
// (mhqa/relations output, input/target rows the trainer reads), curated.jsonl (+ curate/slice0.jsonl),
// rejected.jsonl (what was dropped and why) and report.json. Running the same command again on
// the same folder resumes: finished items are kept, interrupted ones continue from their last
// finished step, and a larger count adds items.
import { existsSync } from "node:fs";
import path from "node:path";
import { homedir } from "node:os";
import YAML from "yaml";
import { JobStore } from "./job-store.js";
import { runItems } from "./job-runner.js";
import { consoleProgress, silentProgress, type ProgressReporter } from "./progress.js";
import type { SynthConfig } from "./config.js";
import { PromptLibrary } from "./prompts.js";
import { checkMhqaPrompts, processMhqaItem, answerMarker, type MhqaExample, type MhqaSeed } from "./mhqa.js";
import { checkRelationsPrompts, processRelationsItem, relationsExamples, type RelationsOutput, type WindowItem } from "./relations.js";
import {
  checkCuratePrompts, fineTuneNotAvailable, processCurateItem, readCurateInput, splitSlices,
  type CurateRow, type FineTune, type FineTunedModel, type LocalBackendLoader,
} from "./curate.js";
import { EvalSetIndex } from "./contamination.js";
import { buildReport, formatSummary, stageReport, writeReport, type SynthReport } from "./report.js";
import { createBackend, type ConfiguredBackend } from "./backends.js";
import { textWindows, hfWindowTokenizer, wordWindowTokenizer, type WindowTokenizer } from "./windows.js";
import type { DocumentSource } from "../sources/document.js";
import { WikipediaSource } from "../sources/wikipedia.js";
import { LocalDocuments } from "../sources/local-documents.js";
import { loadTokenizer } from "../models/tokenizer.js";
import { loadLocalBackend } from "../llm/local-backend.js";
import type { BackendStats } from "../llm/endpoint-pool.js";
import { writeFileAtomic, writeJsonlAtomic } from "../io/atomic-write.js";

export type SynthTask = "mhqa" | "relations" | "curate";

export interface RunSynthOptions {
  task: SynthTask;
  config: SynthConfig;
  /** The run folder; the job lives in <out>/synth. */
  out: string;
  /** Give items that failed with errors a fresh set of attempts. */
  retryFailed?: boolean;
  signal?: AbortSignal;
  /** Progress on stderr by default; false for none. */
  progress?: ProgressReporter | false;
  log?: (line: string) => void;
  /** The trainer, for curation's slice-0 fine-tune (default: not available yet). */
  fineTune?: FineTune;
  /** The local engine (default: not available yet). */
  loadLocalBackend?: LocalBackendLoader;
}

export interface SynthSummary {
  task: SynthTask;
  jobDir: string;
  output: string;
  reportFile: string;
  report: SynthReport;
  interrupted: boolean;
  endpoints: BackendStats[];
  text: string;
}

export async function runSynth(options: RunSynthOptions): Promise<SynthSummary> {
  const jobDir = path.resolve(options.out, "synth");
  const store = JobStore.open(jobDir);
  try {
    return await runWithStore(store, jobDir, options);
  } finally {
    store.close();
  }
}

/** What fixes a job's item list; a resumed job must agree (the count may grow). */
function identity(task: SynthTask, config: SynthConfig): string {
  const s = config.source;
  const source = s?.type === "wikipedia" ? { type: s.type, api_url: s.api_url } : s ? { type: s.type, path: s.path } : null;
  if (task === "mhqa") return JSON.stringify({ task, source, seed: config.mhqa.seed });
  if (task === "relations") {
    const r = config.relations;
    return JSON.stringify({ task, source, seed: r.seed, window: r.window_tokens, overlap: r.overlap_tokens, tokenizer: r.tokenizer ?? null });
  }
  const c = config.curate;
  return JSON.stringify({ task, input: c.input ?? null, ratio: c.slice0_ratio, seed: c.seed });
}

function createSource(config: SynthConfig): DocumentSource {
  const s = config.source;
  if (!s) throw new Error("source: say where documents come from (type: wikipedia, or type: local with a path)");
  if (s.type === "local") {
    return LocalDocuments.load(s.path, { textField: s.text_field, titleField: s.title_field, idField: s.id_field, linksField: s.links_field, maxChars: s.max_chars });
  }
  const cacheRoot = process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache");
  return new WikipediaSource({
    apiUrl: s.api_url, userAgent: s.user_agent, maxlag: s.maxlag, concurrency: s.concurrency, maxRetries: s.max_retries,
    timeoutMs: s.timeout_s * 1000, maxChars: s.max_chars, cacheDir: s.cache_dir ?? path.join(cacheRoot, "s2s-train", "wikipedia"),
    cacheTtlMs: s.cache_ttl_hours * 3600_000,
  });
}

async function runWithStore(store: JobStore, jobDir: string, options: RunSynthOptions): Promise<SynthSummary> {
  const { task, config } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const id = identity(task, config);
  const previous = store.getMeta(`identity:${task}`);
  if (previous !== undefined && previous !== id) {
    throw new Error(`${jobDir} holds a ${task} job made with other settings (${previous}); ` +
      `now ${id}. Use another --out folder, or put the settings back`);
  }
  store.setMeta(`identity:${task}`, id);
  writeFileAtomic(path.join(jobDir, "config.yaml"), YAML.stringify(config));
  if (options.retryFailed) store.resetFailed(task);

  const prompts = new PromptLibrary(config.prompts_dir);
  const loadLocal = options.loadLocalBackend ?? loadLocalBackend;
  const started = Date.now();
  let generator: ConfiguredBackend | undefined;
  let outcome: { interrupted: boolean; output: string; kept: number; slice0?: number };

  if (task === "curate") {
    outcome = await curate(store, jobDir, options, prompts, loadLocal, () => generatorBackend());
  } else {
    generator = await generatorBackend();
    outcome = task === "mhqa"
      ? await mhqa(store, jobDir, options, prompts, generator)
      : await relations(store, jobDir, options, prompts, generator);
  }
  store.setMeta(`seconds:${task}`, String(Number(store.getMeta(`seconds:${task}`) ?? 0) + (Date.now() - started) / 1000));

  // The report covers every stage this folder has run (generation, then curation).
  const stages: Record<string, ReturnType<typeof stageReport>> = {};
  for (const stage of ["mhqa", "relations", "curate"]) if (store.countItems(stage)) stages[stage] = stageReport(store, stage);
  const report = buildReport(stages, outcome.output, outcome.kept, outcome.slice0);
  const reportFile = writeReport(jobDir, report);
  const rejected = store.items(task, "rejected").map((i) => ({ id: i.id, reason: i.reason, detail: i.detail }));
  const failed = store.items(task, "failed").map((i) => ({ id: i.id, reason: "error", detail: i.error, attempts: i.attempts }));
  writeJsonlAtomic(path.join(jobDir, task === "curate" ? "curate/rejected.jsonl" : "rejected.jsonl"), [...rejected, ...failed]);

  const text = formatSummary(task, report, stages[task] ?? stageReport(store, task));
  log(text + (outcome.interrupted ? "\ninterrupted: run the same command again to resume" : ""));
  return {
    task, jobDir, output: outcome.output, reportFile, report, interrupted: outcome.interrupted,
    endpoints: generator?.pool?.stats() ?? [], text,
  };

  async function generatorBackend(): Promise<ConfiguredBackend> {
    generator ??= await createBackend(config.llm, "llm", loadLocal);
    return generator;
  }
}

function progressFor(options: RunSynthOptions, label: string): ProgressReporter {
  return options.progress === false ? silentProgress : options.progress ?? consoleProgress(label);
}

async function mhqa(store: JobStore, jobDir: string, options: RunSynthOptions, prompts: PromptLibrary, llm: ConfiguredBackend) {
  const { config } = options;
  checkMhqaPrompts(prompts);
  const source = createSource(config);
  const evalSet = config.mhqa.contamination
    ? EvalSetIndex.load(config.mhqa.contamination.eval_file, config.mhqa.contamination.fields)
    : undefined;

  // Seeds: D1 candidates, stored before any work so a resumed job works on the same ones. A
  // collection gives the same seeded order every time (a larger count extends it); random
  // articles are drawn until the count is reached.
  const seeds = (ids: string[]) => ids.map((docId) => ({ id: docId, input: { docId } satisfies MhqaSeed }));
  if (source instanceof LocalDocuments) {
    store.addItems("mhqa", seeds(await source.sampleIds(config.mhqa.count, config.mhqa.seed)));
  } else {
    for (let round = 0; round < 4 && store.countItems("mhqa") < config.mhqa.count; round++) {
      store.addItems("mhqa", seeds(await source.sampleIds(config.mhqa.count - store.countItems("mhqa"), config.mhqa.seed)));
    }
  }

  const result = await runItems<MhqaSeed>(store, {
    stage: "mhqa",
    concurrency: config.job.concurrency ?? llm.capacity,
    maxAttempts: config.job.max_item_attempts,
    progress: progressFor(options, "mhqa"),
    ...(options.signal ? { signal: options.signal } : {}),
    process: (ctx) => processMhqaItem(ctx, { source, llm: llm.backend, prompts, config: config.mhqa, llmConfig: config.llm, ...(evalSet ? { evalSet } : {}) }),
  });
  const output = path.join(jobDir, "data.jsonl");
  const kept = writeJsonlAtomic(output, store.items("mhqa", "kept").map((i) => i.output as MhqaExample));
  return { interrupted: result.interrupted, output, kept };
}

function windowTokenizer(config: SynthConfig): WindowTokenizer {
  const dir = config.relations.tokenizer;
  return dir ? hfWindowTokenizer(loadTokenizer(dir), dir) : wordWindowTokenizer;
}

async function relations(store: JobStore, jobDir: string, options: RunSynthOptions, prompts: PromptLibrary, llm: ConfiguredBackend) {
  const { config } = options;
  const r = config.relations;
  checkRelationsPrompts(prompts);
  const source = createSource(config);
  const tokenizer = windowTokenizer(config);

  // Seeding: each document's windows go in together (one transaction), so a document is in the
  // job whole or not at all.
  const seeded = new Set(store.items("relations").map((i) => (i.input as WindowItem).docId));
  const wanted = r.count ?? (source instanceof LocalDocuments ? source.documents.length : undefined);
  if (wanted === undefined) throw new Error("relations.count: say how many Wikipedia articles to use");
  for (let round = 0; seeded.size < wanted && round < 4; round++) {
    const ids = source instanceof LocalDocuments ? await source.sampleIds(wanted, r.seed) : await source.sampleIds(wanted - seeded.size, r.seed);
    for (const docId of ids) {
      if (seeded.size >= wanted) break;
      if (seeded.has(docId)) continue;
      const doc = await source.get(docId);
      seeded.add(docId);
      if (!doc) continue;
      const windows = textWindows(doc.text, tokenizer, r.window_tokens, r.overlap_tokens);
      store.addItems("relations", windows.map((w) => ({
        id: `${doc.id}#${w.index}`,
        input: { docId: doc.id, title: doc.title, window: w.index, windows: windows.length, text: w.text } satisfies WindowItem,
      })));
    }
    if (source instanceof LocalDocuments) break;
  }

  const result = await runItems<WindowItem>(store, {
    stage: "relations",
    concurrency: config.job.concurrency ?? llm.capacity,
    maxAttempts: config.job.max_item_attempts,
    progress: progressFor(options, "relations"),
    ...(options.signal ? { signal: options.signal } : {}),
    process: (ctx) => processRelationsItem(ctx, { llm: llm.backend, prompts, config: r, llmConfig: config.llm }),
  });
  const output = path.join(jobDir, "data.jsonl");
  const rows = store.items("relations", "kept").flatMap((i) => relationsExamples(prompts, i.input as WindowItem, i.output as RelationsOutput, r.export_summaries));
  const kept = writeJsonlAtomic(output, rows);
  return { interrupted: result.interrupted, output, kept };
}

async function curate(store: JobStore, jobDir: string, options: RunSynthOptions, prompts: PromptLibrary,
  loadLocal: LocalBackendLoader, generator: () => Promise<ConfiguredBackend>) {
  const c = options.config.curate;
  if (c.imputation.enabled) checkCuratePrompts(prompts);
  const marker = answerMarker(prompts);
  const input = c.input ?? path.join(jobDir, "data.jsonl");
  const curateDir = path.join(jobDir, "curate");
  const slice0File = path.join(curateDir, "slice0.jsonl");

  let slice0: CurateRow[];
  if (store.getMeta("curate:split") === undefined) {
    const rows = readCurateInput(input, c.imputation.enabled);
    const split = splitSlices(rows, c.slice0_ratio, c.seed);
    writeJsonlAtomic(slice0File, split.slice0);
    store.transaction(() => {
      store.addItems("curate", split.slice1.map((row, i) => ({ id: `row-${split.slice1Index[i]! + 1}`, input: { row } })));
      store.setMeta("curate:split", JSON.stringify({ input, slice0: split.slice0.length, slice1: split.slice1.length }));
    });
    slice0 = split.slice0;
  } else {
    slice0 = readCurateInput(slice0File, false);
  }

  // The model that answers: an endpoint given in the config, or slice 0's fine-tune (done once).
  let answer: ConfiguredBackend;
  if (c.answer_with) {
    answer = await createBackend(c.answer_with, "curate.answer_with", loadLocal);
  } else {
    let tuned: FineTunedModel;
    const stored = store.getMeta("curate:model");
    if (stored) {
      tuned = JSON.parse(stored) as FineTunedModel;
    } else {
      if (!c.base_model) throw new Error("curate.base_model: name the model folder to fine-tune on slice 0 (or give curate.answer_with)");
      if (!existsSync(c.base_model)) throw new Error(`curate.base_model: ${c.base_model} not found`);
      tuned = await (options.fineTune ?? fineTuneNotAvailable)({
        baseModel: c.base_model, trainFile: slice0File, outputDir: path.join(curateDir, "model"), settings: c.train,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      store.setMeta("curate:model", JSON.stringify(tuned));
    }
    answer = { backend: await loadLocal(tuned.modelDir, tuned.adapterDir), capacity: 1 };
  }
  const imputeLlm = c.imputation.enabled && c.imputation.model === "generator" ? (await generator()).backend : undefined;

  const result = await runItems<{ row: CurateRow }>(store, {
    stage: "curate",
    concurrency: options.config.job.concurrency ?? answer.capacity,
    maxAttempts: options.config.job.max_item_attempts,
    progress: progressFor(options, "curate"),
    ...(options.signal ? { signal: options.signal } : {}),
    process: (ctx) => processCurateItem(ctx, { answerLlm: answer.backend, ...(imputeLlm ? { imputeLlm } : {}), prompts, config: c, marker }),
  });
  const output = path.join(jobDir, "curated.jsonl");
  const curated = store.items("curate", "kept").map((i) => i.output as CurateRow);
  const kept = writeJsonlAtomic(output, c.include_slice0 ? [...slice0, ...curated] : curated);
  return { interrupted: result.interrupted, output, kept, slice0: slice0.length };
}
