// runPipeline: documents → model in one run folder. The stages and what each leaves:
//   synth   <run>/synth/ (the job: state.sqlite, data.jsonl, rejected.jsonl, report.json)
//   curate  <run>/synth/curated.jsonl (+ synth/curate/: slice 0 and the curation model)
//   train   the trainer's files at the run folder's top level (config.yaml, checkpoints/, logs/, final/)
//   eval    <run>/eval/predictions.jsonl and metrics.json
// <run>/pipeline.json records each finished stage and its settings. Running the pipeline again
// skips a finished stage whose output is still there and whose settings are unchanged, and
// resumes an unfinished one: synth and curate through
// their job store, training from its last checkpoint. A stage that runs again makes the stages
// after it run again from the start (a new training run over new data).
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import type { TrainConfig } from "../config/schema.js";
import { resolveConfig } from "../config/load.js";
import { runEval, type RunEvalResult } from "../eval/run-eval.js";
import { writeFileAtomic } from "../io/atomic-write.js";
import { listCheckpoints } from "../train/checkpoint.js";
import { runPaths } from "../train/run-folder.js";
import { train, type TrainOptions, type TrainResult } from "../train/trainer.js";
import type { FineTune, LocalBackendLoader } from "./curate.js";
import type { PipelineConfig } from "./pipeline-config.js";
import { JobStore } from "./job-store.js";
import type { ProgressReporter } from "./progress.js";
import { runSynth, type SynthSummary } from "./run-synth.js";

export const PIPELINE_STAGES = ["synth", "curate", "train", "eval"] as const;
export type PipelineStage = (typeof PIPELINE_STAGES)[number];

export interface RunPipelineOptions {
  config: PipelineConfig;
  /** The run folder (default: the config's run_dir). */
  out?: string;
  /** Stop at the next safe point (synth items, a training step); the next run resumes. */
  signal?: AbortSignal;
  /** Synth progress bars on stderr by default; false for none. */
  progress?: ProgressReporter | false;
  /** The trainer's console lines (default false: its files only). */
  console?: boolean;
  /** The trainer's events (progress, evaluations, checkpoints). */
  trainEvents?: Pick<TrainOptions, "onProgress" | "onEvaluation" | "onCheckpoint">;
  log?: (line: string) => void;
  /** Plug-ins passed to runSynth (tests). */
  fineTune?: FineTune;
  loadLocalBackend?: LocalBackendLoader;
}

export interface StageOutcome {
  /** ran: did its work now; skipped: finished in an earlier run; off: not part of this pipeline. */
  status: "ran" | "skipped" | "off";
  output?: string;
}

export interface PipelineResult {
  status: "completed" | "interrupted";
  runDir: string;
  stages: Partial<Record<PipelineStage, StageOutcome>>;
  /** The stage that was interrupted. */
  interruptedAt?: PipelineStage;
  synth?: SynthSummary;
  curate?: SynthSummary;
  train?: TrainResult;
  eval?: RunEvalResult;
  /** The trained model (and adapter for LoRA). */
  model?: { model: string; adapter?: string };
}

interface PipelineState {
  /** key: the stage's settings when it finished; other settings make it run again. */
  stages: Partial<Record<PipelineStage, { finished_at: string; output: string; key: string }>>;
}

const STATE_FILE = "pipeline.json";

function readState(runDir: string): PipelineState {
  const file = path.join(runDir, STATE_FILE);
  if (!existsSync(file)) return { stages: {} };
  try {
    const state = JSON.parse(readFileSync(file, "utf8")) as PipelineState;
    if (typeof state.stages !== "object" || state.stages === null) throw new Error("no stages");
    return state;
  } catch (e) {
    throw new Error(`${file}: not a pipeline state file (${(e as Error).message}); delete it to start the stages' bookkeeping over`);
  }
}

function forgetCuration(runDir: string): void {
  const jobDir = path.join(runDir, "synth");
  if (!existsSync(path.join(jobDir, "state.sqlite"))) return;
  const store = JobStore.open(jobDir);
  try {
    store.clearStage("curate");
  } finally {
    store.close();
  }
  rmSync(path.join(jobDir, "curate"), { recursive: true, force: true });
  rmSync(path.join(jobDir, "curated.jsonl"), { force: true });
}

/** The training config: the pipeline's train sections with its data file and run folder. */
export function pipelineTrainConfig(config: PipelineConfig, runDir: string, trainFile: string): TrainConfig {
  const data = (config.train.data ?? {}) as Record<string, unknown>;
  try {
    return resolveConfig({
      values: { ...config.train, data: { ...data, train_file: trainFile }, output: { dir: runDir } },
      cwd: config.baseDir,
    });
  } catch (e) {
    throw new Error(`${config.source}: train: ${(e as Error).message}`);
  }
}

export async function runPipeline(options: RunPipelineOptions): Promise<PipelineResult> {
  const { config } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const runDir = path.resolve(options.out ?? config.runDir);
  mkdirSync(runDir, { recursive: true });
  const state = readState(runDir);
  const saveState = () => writeFileAtomic(path.join(runDir, STATE_FILE), JSON.stringify(state, null, 2) + "\n");

  const dataFile = path.join(runDir, "synth", "data.jsonl");
  const curatedFile = path.join(runDir, "synth", "curated.jsonl");
  const trainFile = config.curate ? curatedFile : dataFile;
  // Checked before any LLM time is spent.
  const trainConfig = pipelineTrainConfig(config, runDir, trainFile);
  const paths = runPaths(runDir);

  const result: PipelineResult = { status: "completed", runDir, stages: {} };
  // Once a stage runs, the ones after it are stale: they run again, from the start.
  let upstreamRan = false;
  const finished = (stage: PipelineStage, output: string, key: string) => {
    const s = state.stages[stage];
    return !upstreamRan && s !== undefined && s.output === output && s.key === key && existsSync(output);
  };
  const markRunning = (stage: PipelineStage) => {
    upstreamRan = true;
    for (const later of PIPELINE_STAGES.slice(PIPELINE_STAGES.indexOf(stage))) delete state.stages[later];
    saveState();
  };
  const markDone = (stage: PipelineStage, output: string, key: string) => {
    state.stages[stage] = { finished_at: new Date().toISOString(), output, key };
    saveState();
    result.stages[stage] = { status: "ran", output };
  };
  const skip = (stage: PipelineStage, output: string) => {
    log(`${stage}: finished in an earlier run (${path.relative(process.cwd(), output) || output}); skipped`);
    result.stages[stage] = { status: "skipped", output };
  };
  const interrupted = (stage: PipelineStage) => {
    log(`${stage}: interrupted; run the same command again to resume`);
    return { ...result, status: "interrupted" as const, interruptedAt: stage };
  };
  const synthOptions = {
    out: runDir,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.progress !== undefined ? { progress: options.progress } : {}),
    log,
    ...(options.fineTune ? { fineTune: options.fineTune } : {}),
    ...(options.loadLocalBackend ? { loadLocalBackend: options.loadLocalBackend } : {}),
  };

  // Without a model named for curation, the model the pipeline trains is the one fine-tuned on slice 0.
  const curateSettings = { ...config.synth.curate };
  if (!curateSettings.answer_with && !curateSettings.base_model && !trainConfig.model.from_scratch) curateSettings.base_model = trainConfig.model.path;
  // What each stage depends on: changing it runs the stage (and the ones after it) again.
  const { curate: _curate, ...generation } = config.synth;
  const keys = {
    synth: JSON.stringify({ task: config.task, ...generation }),
    curate: JSON.stringify(curateSettings),
    train: JSON.stringify(trainConfig),
    eval: JSON.stringify(config.eval ?? null),
  };

  // 1. synth
  if (finished("synth", dataFile, keys.synth)) {
    skip("synth", dataFile);
  } else {
    markRunning("synth");
    log(`synth: ${config.task} → ${path.join(runDir, "synth")}`);
    const summary = await runSynth({ ...synthOptions, task: config.task, config: config.synth });
    result.synth = summary;
    if (summary.interrupted) return interrupted("synth");
    if (summary.report.stages[config.task]!.kept === 0) {
      throw new Error(`synth: no item was kept (see ${summary.reportFile} and ${path.join(summary.jobDir, "rejected.jsonl")}); nothing to train on`);
    }
    markDone("synth", dataFile, keys.synth);
  }

  // 2. curate
  if (!config.curate) {
    result.stages.curate = { status: "off" };
  } else if (finished("curate", curatedFile, keys.curate)) {
    skip("curate", curatedFile);
  } else {
    // Curation over data it has not seen, or with other settings, starts over: its split into
    // slices, answers and fine-tune belong to the data and settings they were made with. An
    // unfinished curation of the same data resumes.
    if (upstreamRan || state.stages.curate !== undefined) forgetCuration(runDir);
    markRunning("curate");
    const curate = curateSettings;
    log(`curate: ${curate.answer_with ? "answering with curate.answer_with" : `fine-tuning ${curate.base_model ?? "(curate.base_model)"} on slice 0`}`);
    const summary = await runSynth({ ...synthOptions, task: "curate", config: { ...config.synth, curate } });
    result.curate = summary;
    if (summary.interrupted) return interrupted("curate");
    if (summary.report.kept === 0) {
      throw new Error(`curate: no question was kept (see ${summary.reportFile} and ${path.join(summary.jobDir, "curate", "rejected.jsonl")}); nothing to train on`);
    }
    markDone("curate", curatedFile, keys.curate);
  }

  // 3. train
  const trained = trainConfig.model.method === "lora"
    ? { model: trainConfig.model.path, adapter: paths.final }
    : { model: paths.final };
  if (finished("train", paths.final, keys.train)) {
    skip("train", paths.final);
  } else {
    // An unfinished run over the same data continues from its last checkpoint (the trainer warns
    // if the settings changed meanwhile); new data, or a finished run with other settings, starts over.
    const resume = !upstreamRan && state.stages.train === undefined && listCheckpoints(paths.checkpoints).length > 0;
    markRunning("train");
    log(`train: ${path.relative(process.cwd(), trainFile) || trainFile} → ${runDir}${resume ? " (resuming)" : ""}`);
    const run = await train({
      config: trainConfig,
      ...(resume ? { resume: true } : { overwrite: true }),
      console: options.console ?? false,
      ...options.trainEvents,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    result.train = run;
    if (run.status === "interrupted" || !run.finalDir) return interrupted("train");
    markDone("train", paths.final, keys.train);
  }
  result.model = trained;

  // 4. eval
  const evalDir = path.join(runDir, "eval");
  const metricsFile = path.join(evalDir, "metrics.json");
  const e = config.eval;
  if (!e) {
    result.stages.eval = { status: "off" };
    log("eval: no eval section in the config; skipped");
  } else if (finished("eval", metricsFile, keys.eval)) {
    skip("eval", metricsFile);
  } else {
    markRunning("eval");
    log(`eval: ${path.relative(process.cwd(), e.data) || e.data} → ${evalDir}`);
    const d = trainConfig.data;
    const evaluation = await runEval({
      ...trained,
      data: e.data,
      metrics: e.metrics,
      inputField: e.input_field,
      targetField: e.target_field,
      // Prompts as training saw them.
      ...(d.prompt_template !== undefined ? { promptTemplate: d.prompt_template } : {}),
      chatTemplate: d.chat_template,
      ...(d.chat_template && d.system_prompt !== undefined ? { systemPrompt: d.system_prompt } : {}),
      batchSize: e.batch_size,
      ...(e.max_samples !== undefined ? { maxSamples: e.max_samples } : {}),
      ...(e.max_new_tokens !== undefined ? { generation: { maxNewTokens: e.max_new_tokens } } : {}),
      dtype: trainConfig.model.dtype,
      output: evalDir,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    result.eval = evaluation;
    log(evaluation.table);
    markDone("eval", metricsFile, keys.eval);
  }
  return result;
}
