// train(): the training loop around the native step. Epochs or max steps over the data's epoch
// plans; gradient accumulation normalised over all counted tokens of a step's micro-batches;
// scheduled learning rate; evaluation, early stopping and checkpoints (with rotation that keeps
// the best) at the configured steps; exact resume; a clean stop on request (SIGINT/SIGTERM in the
// CLI) and on a non-finite loss. Everything a run writes goes into its folder (run-folder.ts):
// the trackers of the config's tracking section (TensorBoard event files in logs/tensorboard by
// default) get every train-log line and evaluation, and report.html is written at the end of every
// session that completes, stops early, is interrupted or diverges (a non-finite loss).
import { mkdirSync, readdirSync, copyFileSync, rmSync } from "node:fs";
import path from "node:path";
import type { NativeBatch } from "../../bindings/native.js";
import type { TrainConfig, TrainConfigInput } from "../config/schema.js";
import { resolveConfig } from "../config/load.js";
import type { Example } from "../data/types.js";
import type { Model } from "../models/model.js";
import { setNumThreads } from "../system.js";
import { runReport } from "../report/report.js";
import { startTrackers, type Trackers } from "../track/trackers.js";
import type { RunStatus } from "../track/tracker.js";
import {
  listCheckpoints, OPTIMIZER_FILE, removeIncompleteCheckpoints, renameFolderInto, rotateCheckpoints,
  saveCheckpoint, writeWeights,
} from "./checkpoint.js";
import { CsvLog, TRAIN_COLUMNS, VALID_COLUMNS } from "./csv-log.js";
import { generationMetricsFor } from "../eval/generation-metrics.js";
import { evaluateLoss, type GenerationMetrics } from "./evaluate.js";
import { loadModelForTraining } from "./load-model.js";
import { memoryFields } from "./memory-fields.js";
import { createModelFolder } from "../models/create-model-folder.js";
import {
  changedSinceLastSession, checkFreshRun, clearEarlierRun, findResumeCheckpoint, runPaths, writeRunConfig, type RunPaths,
} from "./run-folder.js";
import { RunLog, type ConsoleOptions } from "./run-log.js";
import { learningRateAt, warmupStepsFor, type ScheduleOptions } from "./schedule.js";
import { dropoutSeed } from "./seeds.js";
import { loadTrainingData, type TrainingData } from "./training-data.js";
import {
  readTrainerState, RNG_SCHEME, TRAINER_STATE_FILE, type EvalLogEntry, type TrainerState, type TrainLogEntry,
} from "./trainer-state.js";

export interface ProgressEvent {
  step: number;
  totalSteps: number;
  /** Fractional epochs done. */
  epoch: number;
  /** Mean loss over the step's counted tokens (null when the step had none). */
  loss: number | null;
  learningRate: number;
  gradNorm: number;
  /** Counted (label) tokens of the step. */
  countedTokens: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
}

export interface EvaluationEvent extends EvalLogEntry {
  /** The best evaluation so far by train.metric_for_best_model. */
  isBest: boolean;
}

export interface CheckpointEvent {
  step: number;
  path: string;
  /** Checkpoints save_total_limit removed. */
  deleted: string[];
  /** The best checkpoint so far, if any evaluation was saved. */
  best: string | null;
}

export interface TrainOptions {
  /** The config: resolved (resolveConfig), or an object of sections that train() resolves and validates. */
  config: TrainConfig | TrainConfigInput;
  /** Prepared examples; when absent, config.data is loaded. */
  data?: TrainingData;
  /** true: continue from the run's latest checkpoint; a path: from that checkpoint. */
  resume?: boolean | string;
  /** Start from step 0 even if the run folder holds an earlier run (which is deleted). */
  overwrite?: boolean;
  /** Stop at the next step boundary, save a checkpoint and return with status "interrupted". */
  signal?: AbortSignal;
  /** Readable lines (and a progress line on a terminal) on stderr; default false (file log only). */
  console?: boolean | ConsoleOptions;
  /** Generation-based metrics, added to each evaluation (default: train.eval_metrics through generationMetricsFor). */
  generationMetrics?: GenerationMetrics;
  onProgress?: (event: ProgressEvent) => void;
  onEvaluation?: (event: EvaluationEvent) => void;
  onCheckpoint?: (event: CheckpointEvent) => void;
}

export interface TrainResult {
  status: "completed" | "early_stopped" | "interrupted";
  runDir: string;
  globalStep: number;
  epoch: number;
  /** The model or adapter to use (null when interrupted). */
  finalDir: string | null;
  lastCheckpoint: string | null;
  bestCheckpoint: string | null;
  bestMetric: number | null;
  history: TrainerState["log_history"];
  /** report.html, or null when writing it failed (a warning says why). */
  report: string | null;
}

/** A step whose loss or gradient was NaN or infinite: the run stops; the last checkpoint is intact. */
export class NonFiniteLossError extends Error {
  readonly code = "S2S_NONFINITE_LOSS";
  constructor(readonly step: number, readonly lastCheckpoint: string | null, what: string) {
    super(
      `${what} at step ${step}; the run stopped without saving this step. ` +
        (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint} (resume from it with a lower learning rate).`
                        : "No checkpoint was saved before it (lower the learning rate and start again)."),
    );
    this.name = "NonFiniteLossError";
  }
}

export class TrainConfigError extends Error {
  readonly code = "S2S_CONFIG";
}

/** A tracker of the tracking section could not start (a dead server, a missing key): no step was taken. */
export class TrackingStartError extends Error {
  readonly code = "S2S_TRACKER";
}

/** Non-padding tokens of a batch (encoder and decoder), for tokens/s. */
function batchTokens(b: NativeBatch): number {
  const sum = (a: Int32Array) => a.reduce((s, v) => s + (v !== 0 ? 1 : 0), 0);
  let n = b.attentionMask ? sum(b.attentionMask) : b.batchSize * b.seqLen;
  if (b.decoderLen !== undefined) {
    n += b.decoderAttentionMask ? sum(b.decoderAttentionMask)
      : b.labels ? b.labels.reduce((s, v) => s + (v !== -100 ? 1 : 0), 0) : b.batchSize * b.decoderLen;
  }
  return n;
}

/** Refuses data and settings that cannot make a run, before anything is written. */
function checkSetup(config: TrainConfig, data: TrainingData, hasGenerationMetrics: boolean): void {
  const t = config.train;
  if (data.train.length === 0) throw new TrainConfigError("no training examples (check data.train_file and data.valid_ratio)");
  const needsEval = t.load_best_model_at_end || t.early_stopping.patience > 0;
  if (data.valid.length === 0 && needsEval) {
    throw new TrainConfigError(
      `${t.load_best_model_at_end ? "train.load_best_model_at_end" : "train.early_stopping.patience"} needs validation examples, and there are none (set data.valid_file or data.valid_ratio)`,
    );
  }
  const builtIn = ["eval_loss", "perplexity"];
  if (!hasGenerationMetrics && !builtIn.includes(t.metric_for_best_model) && (needsEval || t.save_total_limit !== null)) {
    throw new TrainConfigError(
      `train.metric_for_best_model is "${t.metric_for_best_model}", which only generation-based evaluation computes (set train.eval_metrics); without it the metrics are ${builtIn.join(", ")}`,
    );
  }
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  const config = resolveConfig({ values: options.config });
  const paths = runPaths(config.output.dir);
  // Everything that can be refused is checked before the run folder is touched.
  const resumeFrom = options.resume ? findResumeCheckpoint(paths, options.resume) : undefined;
  const resumedState = resumeFrom ? readTrainerState(path.join(resumeFrom, TRAINER_STATE_FILE)) : undefined;
  if (!resumeFrom) checkFreshRun(paths, options.overwrite ?? false);
  if (config.train.threads !== null) setNumThreads(config.train.threads);
  // Data first: a bad row is found before any weights are read.
  const data = options.data ?? (await loadTrainingData(config));
  const generationMetrics = options.generationMetrics ?? generationMetricsFor(config);
  checkSetup(config, data, generationMetrics !== undefined);
  // Generation-based metrics generate with the training model, on its device.
  let model;
  if (config.model.from_scratch) {
    // Fresh weights (seeded) in <run>/init, which later sessions and final/ read as the base.
    if (!resumeFrom) {
      clearEarlierRun(paths);
      await createModelFolder(config.model.path, paths.init, { seed: config.train.seed });
    }
    model = await loadModelForTraining({ ...config, model: { ...config.model, path: paths.init } }, resumeFrom);
  } else {
    model = await loadModelForTraining(config, resumeFrom);
    if (!resumeFrom) clearEarlierRun(paths);
  }
  mkdirSync(paths.logs, { recursive: true });
  const log = new RunLog(paths.runLog, options.console ?? false);
  let trackers: Trackers;
  try {
    // Strict at the start (before any step), lenient later: a failure to log is a warning.
    trackers = await startTrackers(config.tracking, {
      runDir: paths.dir, config: config as unknown as Record<string, unknown>, warn: (m) => log.warn(m),
    });
  } catch (e) {
    const error = new TrackingStartError(`tracking: ${(e as Error).message} (the run did not start; fix the tracking section or remove it)`);
    log.error(error.message, { code: error.code });
    log.close();
    // A fresh run that could not start leaves nothing that would need --overwrite next time.
    if (!resumeFrom) clearEarlierRun(paths);
    throw error;
  }
  let status: RunStatus = "failed";
  let run: TrainingRun | undefined;
  try {
    run = new TrainingRun({ ...options, config, ...(generationMetrics ? { generationMetrics } : {}) }, config, paths, log, model, data, trackers);
    const result = await run.run(resumeFrom, resumedState);
    status = "finished";
    return result;
  } catch (e) {
    // A diverged run's curves are what explains it: its report is written, headed by the
    // reason. Other failures write none (`s2s-train report` can). The error is the log's last line.
    if (e instanceof NonFiniteLossError) writeReport(paths.dir, log, e.message);
    log.error(e instanceof Error ? e.message : String(e), { code: (e as { code?: unknown }).code });
    throw e;
  } finally {
    await run?.trackingDone();
    await trackers.close(status);
    log.close();
  }
}

/** report.html from what the run folder holds now; a failure is a warning, never the run's. */
function writeReport(dir: string, log: RunLog, stopped?: string): string | null {
  try {
    const { file } = runReport({ run: dir, ...(stopped !== undefined ? { stopped } : {}) });
    log.info(`report: ${file}`);
    return file;
  } catch (e) {
    log.warn(`could not write the report: ${(e as Error).message}`);
    return null;
  }
}

/** One session of a run: from step 0 or a checkpoint to the end, a stop request, or a failure. */
class TrainingRun {
  private state!: TrainerState;
  private totalSteps = 0;
  private schedule!: ScheduleOptions;
  private plan: { epoch: number; batches: number[][] } | undefined;
  private readonly trainCsv: CsvLog;
  private readonly validCsv: CsvLog;
  private lastCheckpoint: string | null = null;
  private lastEval: { step: number; value: number } | undefined;
  private sessionStart = 0;
  private sessionSteps = 0;
  private windowStart = 0;
  /** Micro-steps of the log window whose forward and backward a GPU replayed (s2s::PassReplay). */
  private replayedInWindow = 0;
  private elapsedAtStart = 0;
  /** Tracker calls in order, off the training path (a slow server does not slow the steps). */
  private tracking: Promise<void> = Promise.resolve();

  constructor(private readonly options: TrainOptions, private readonly config: TrainConfig,
              private readonly paths: RunPaths, private readonly log: RunLog,
              private readonly model: Model, private readonly data: TrainingData,
              private readonly trackers: Trackers) {
    this.trainCsv = new CsvLog(paths.trainCsv, TRAIN_COLUMNS);
    this.validCsv = new CsvLog(paths.validCsv, VALID_COLUMNS);
  }

  private get t() {
    return this.config.train;
  }

  private greaterIsBetter(): boolean {
    const metric = this.t.metric_for_best_model;
    return this.t.greater_is_better ?? !(metric.endsWith("loss") || metric === "perplexity");
  }

  /** Resolves when every tracker call made so far has returned. */
  trackingDone(): Promise<void> {
    return this.tracking;
  }

  /** Trackers never throw (Trackers reports their failures); the chain keeps the calls in order. */
  private track(call: (trackers: Trackers) => Promise<void>): void {
    this.tracking = this.tracking.then(() => call(this.trackers));
  }

  async run(resumeFrom: string | undefined, resumed: TrainerState | undefined): Promise<TrainResult> {
    const t = this.t;
    const changed = resumeFrom ? changedSinceLastSession(this.paths, this.config) : [];
    if (changed.length > 0) {
      this.log.warn("the config differs from the one this run was started with; the resumed run will not match an uninterrupted one", { keys: changed.join(", ") });
    }
    writeRunConfig(this.paths, this.config);
    for (const name of removeIncompleteCheckpoints(this.paths.checkpoints)) this.log.info("removed an incomplete checkpoint", { name });

    this.totalSteps = this.countTotalSteps();
    this.schedule = {
      scheduler: t.scheduler, lr: t.lr, totalSteps: this.totalSteps,
      warmupSteps: warmupStepsFor(this.totalSteps, t.warmup_steps, t.warmup_ratio),
    };

    if (this.model.lossScaler().enabled) {
      const ls = t.loss_scaling;
      this.model.configureLossScaler({ initScale: ls.init_scale, growthFactor: ls.growth_factor, backoffFactor: ls.backoff_factor, growthInterval: ls.growth_interval });
    }
    if (resumeFrom && resumed) {
      await this.restore(resumeFrom, resumed);
      const step = this.state.global_step;
      this.track((trackers) => trackers.resume(step));
    } else {
      this.state = this.initialState();
    }
    const info = this.model.info();
    this.log.info(resumeFrom ? `resuming from ${resumeFrom}` : "training", {
      run: this.paths.dir, model: this.config.model.path, method: this.config.model.method, device: info.device,
      parameters: info.parameters, trainable: info.trainableParameters,
      train_examples: this.data.train.length, valid_examples: this.data.valid.length,
      step: this.state.global_step, total_steps: this.totalSteps, warmup_steps: this.schedule.warmupSteps,
    });

    const report = this.data.report;
    if (report) {
      this.log.info("data", {
        rows: report.rows, train: report.train, valid: report.valid, skipped: report.skipped.length,
        truncated_inputs: report.truncatedInputs, truncated_targets: report.truncatedTargets,
      });
    }
    if (this.data.valid.length === 0) this.log.warn("no validation examples: evaluation is skipped");

    this.sessionStart = performance.now();
    this.windowStart = this.sessionStart;
    this.elapsedAtStart = this.state.elapsed_seconds;
    let status: TrainResult["status"] = "completed";
    while (this.state.global_step < this.totalSteps) {
      if (this.options.signal?.aborted) {
        status = "interrupted";
        break;
      }
      const outcome = await this.step();
      if (outcome === "early_stop") {
        status = "early_stopped";
        break;
      }
    }
    if (status !== "completed" && this.lastCheckpoint !== this.checkpointPath(this.state.global_step) && this.state.global_step > 0) {
      await this.save();
    }
    if (status === "interrupted") {
      this.log.info("stopped on request; resume with --resume", { step: this.state.global_step, checkpoint: this.lastCheckpoint });
    }
    const finalDir = status === "interrupted" ? null : await this.writeFinal();
    if (finalDir) this.log.info(status === "early_stopped" ? "stopped early" : "done", { step: this.state.global_step, final: finalDir });
    await this.tracking;
    const reportFile = writeReport(this.paths.dir, this.log);
    return {
      status,
      runDir: this.paths.dir,
      globalStep: this.state.global_step,
      epoch: this.state.epoch,
      finalDir,
      lastCheckpoint: listCheckpoints(this.paths.checkpoints).at(-1)?.path ?? null,
      bestCheckpoint: this.bestCheckpointPath(),
      bestMetric: this.state.best_metric,
      history: this.state.log_history,
      report: reportFile,
    };
  }

  private epochPlan(epoch: number): number[][] {
    if (this.plan?.epoch !== epoch) {
      const batches = this.data.planEpoch(this.data.train, {
        batchSize: this.config.data.batch_size, seed: this.t.seed, epoch, groupByLength: this.config.data.group_by_length,
      });
      if (batches.length === 0) throw new TrainConfigError(`the data's plan for epoch ${epoch} has no batches`);
      this.plan = { epoch, batches };
    }
    return this.plan.batches;
  }

  private countTotalSteps(): number {
    if (this.t.max_steps !== null) return this.t.max_steps;
    let total = 0;
    for (let e = 0; e < this.t.epochs; e++) total += Math.ceil(this.epochPlan(e).length / this.t.gradient_accumulation_steps);
    return total;
  }

  private initialState(): TrainerState {
    return {
      format: "s2s-train/trainer_state@1",
      global_step: 0,
      optimizer_steps: 0,
      loss_scaler: null,
      epoch: 0,
      max_steps: this.totalSteps,
      sampler: { epoch: 0, next_batch: 0 },
      rng: { seed: this.t.seed, scheme: RNG_SCHEME },
      metric_for_best_model: this.t.metric_for_best_model,
      greater_is_better: this.greaterIsBetter(),
      best_metric: null,
      best_metric_step: null,
      best_model_checkpoint: null,
      best_checkpoint_metric: null,
      early_stopping_patience_counter: 0,
      log_window: { steps: 0, loss_sum: 0, loss_steps: 0, tokens: 0 },
      total_tokens: 0,
      elapsed_seconds: 0,
      log_history: [],
    };
  }

  private async restore(from: string, s: TrainerState): Promise<void> {
    const { step } = await this.model.loadOptimizerState(path.join(from, OPTIMIZER_FILE));
    const applied = s.optimizer_steps ?? s.global_step;
    if (step !== applied) {
      throw new TrainConfigError(`${from}: ${OPTIMIZER_FILE} is at optimizer step ${step} but ${TRAINER_STATE_FILE} at ${applied}`);
    }
    const scaler = this.model.lossScaler();
    if (scaler.enabled && s.loss_scaler) {
      // A growth_interval lowered since the checkpoint: the good-step count stops just short of it.
      const tracker = Math.min(s.loss_scaler.growth_tracker, this.t.loss_scaling.growth_interval - 1);
      this.model.setLossScaler({ scale: s.loss_scaler.scale, growthTracker: tracker });
    } else if (scaler.enabled !== Boolean(s.loss_scaler)) {
      this.log.warn("the checkpoint was trained in another compute dtype; the float16 loss scale starts afresh or is dropped", { dtype: this.config.model.dtype });
    }
    if (s.max_steps !== this.totalSteps) {
      this.log.warn("the run now has a different number of steps than when it started (epochs, max_steps, batch size or data changed)", { before: s.max_steps, now: this.totalSteps });
    }
    this.state = { ...s, max_steps: this.totalSteps };
    this.lastCheckpoint = from;
    // The future of the run past this checkpoint is retraced: its logs and later checkpoints go.
    this.trainCsv.truncateAfter(s.global_step);
    this.validCsv.truncateAfter(s.global_step);
    for (const c of listCheckpoints(this.paths.checkpoints)) {
      if (c.step > s.global_step) {
        rmSync(c.path, { recursive: true, force: true });
        this.log.info("removed a checkpoint later than the resume point", { checkpoint: c.path });
      }
    }
    const last = [...s.log_history].reverse().find((h) => h.kind === "eval");
    if (last && last.kind === "eval") {
      const value = this.metricOf(last);
      if (value !== undefined) this.lastEval = { step: last.step, value };
    }
  }

  private checkpointPath(step: number): string {
    return path.join(this.paths.checkpoints, `checkpoint-${step}`);
  }

  private bestCheckpointPath(): string | null {
    return this.state.best_model_checkpoint ? path.join(this.paths.checkpoints, this.state.best_model_checkpoint) : null;
  }

  /** One optimizer step and what follows it (log, evaluation, checkpoint). */
  private async step(): Promise<"continue" | "early_stop"> {
    const t = this.t;
    const s = this.state;
    const plan = this.epochPlan(s.sampler.epoch);
    const group = plan.slice(s.sampler.next_batch, s.sampler.next_batch + t.gradient_accumulation_steps);
    const step = s.global_step + 1;
    const fp16 = this.model.lossScaler().enabled;
    // AdamW's step and the schedule's position count applied updates (float16 may skip some).
    const optimizerStep = (s.optimizer_steps ?? s.global_step) + 1;
    const lr = learningRateAt(this.schedule, optimizerStep);
    const batches = group.map((indices) => this.data.collate(indices.map((i) => this.data.train[i]!)));
    const optimizer = {
      step: optimizerStep, lr, beta1: t.betas[0], beta2: t.betas[1], eps: t.eps, weightDecay: t.weight_decay, maxGradNorm: t.max_grad_norm,
    };

    // Every micro-batch's forward and backward, then the update, in one native call that waits
    // for a GPU once (the host queues a micro-batch while the device runs the one before). The
    // loss is the mean over every counted token of the step, not a mean of the micro-batches'
    // means; float16's scaled backward divides by the step's counted tokens itself (torch's
    // scaled mean loss).
    const seeds = batches.map((_, m) => dropoutSeed(t.seed, step, m));
    const r = batches.length === 1
      ? await this.model.trainStep(batches[0]!, { ...optimizer, training: true, dropoutSeed: seeds[0]! })
      : await this.model.trainStep(batches, { ...optimizer, training: true, dropoutSeed: seeds });
    this.replayedInWindow += r.replayedMicroSteps;
    const count = r.count;
    const loss = count > 0 ? r.loss : null;
    const { gradNorm, finite } = r;
    const scaler = this.model.lossScaler();  // after the step: its new scale
    const advice = fp16 ? " (float16 activations overflow past 65504: train in bfloat16 or float32)" : "";
    if (loss !== null && !Number.isFinite(loss)) throw new NonFiniteLossError(step, this.lastCheckpoint, `the loss is ${loss}${advice}`);
    // float16: a non-finite gradient is a loss-scale overflow; the step was skipped and the scale
    // halved (torch GradScaler). Below 1 the gradients overflow unscaled: fp16 cannot train this.
    if (!finite && (!fp16 || scaler.scale < 1)) {
      throw new NonFiniteLossError(step, this.lastCheckpoint, `the gradient norm is ${gradNorm}${fp16 ? ` with the float16 loss scale down to ${scaler.scale}${advice}` : ""}`);
    }
    if (!finite) this.log.info("float16 gradient overflow: the step was skipped and the loss scale lowered", { step, loss_scale: scaler.scale });
    if (finite) s.optimizer_steps = optimizerStep;
    if (fp16) {
      const skipped = (s.loss_scaler?.skipped_steps ?? 0) + (finite ? 0 : 1);
      s.loss_scaler = { scale: scaler.scale, growth_tracker: scaler.growthTracker, skipped_steps: skipped };
    }
    if (loss === null) this.log.warn("a step had no counted tokens (every label masked); its update only decays the weights", { step });

    // Advance.
    const tokens = batches.reduce((n, b) => n + batchTokens(b), 0);
    s.global_step = step;
    s.sampler.next_batch += group.length;
    const epochEnded = s.sampler.next_batch >= plan.length;
    s.epoch = s.sampler.epoch + s.sampler.next_batch / plan.length;
    if (epochEnded) s.sampler = { epoch: s.sampler.epoch + 1, next_batch: 0 };
    s.total_tokens += tokens;
    const w = s.log_window;
    w.steps += 1;
    w.tokens += tokens;
    if (loss !== null) {
      w.loss_sum += loss;
      w.loss_steps += 1;
    }
    this.sessionSteps += 1;
    const now = performance.now();
    s.elapsed_seconds = this.elapsedAtStart + (now - this.sessionStart) / 1000;
    const sessionSeconds = (now - this.sessionStart) / 1000;
    const tokensPerSecond = w.tokens / Math.max(1e-9, (now - this.windowStart) / 1000);
    const progress: ProgressEvent = {
      step, totalSteps: this.totalSteps, epoch: s.epoch, loss, learningRate: lr, gradNorm, countedTokens: count,
      tokensPerSecond, elapsedSeconds: s.elapsed_seconds,
    };
    this.options.onProgress?.(progress);
    this.log.debug("step", { step, epoch: s.epoch, loss, learning_rate: lr, grad_norm: gradNorm, tokens });
    this.log.progress({
      step, totalSteps: this.totalSteps, loss, learningRate: lr, tokensPerSecond,
      etaSeconds: this.sessionSteps > 0 ? (sessionSeconds / this.sessionSteps) * (this.totalSteps - step) : null,
    });

    const last = step === this.totalSteps;
    if (step % t.logging_steps === 0 || last) this.writeTrainLog(lr, gradNorm, now);

    let stopEarly = false;
    const evalNow = t.eval_steps !== null ? step % t.eval_steps === 0 : epochEnded;
    if ((evalNow || last) && this.data.valid.length > 0) stopEarly = await this.evaluate();
    const saveNow = t.save_steps !== null ? step % t.save_steps === 0 : epochEnded;
    if (saveNow || last) await this.save();
    return stopEarly ? "early_stop" : "continue";
  }

  private writeTrainLog(lr: number, gradNorm: number, now: number): void {
    const finiteNorm = Number.isFinite(gradNorm) ? gradNorm : null;  // null: a skipped float16 step
    const s = this.state;
    const w = s.log_window;
    const entry: TrainLogEntry = {
      step: s.global_step,
      epoch: s.epoch,
      loss: w.loss_steps > 0 ? w.loss_sum / w.loss_steps : null,
      learning_rate: lr,
      grad_norm: finiteNorm,
      tokens_per_second: w.tokens / Math.max(1e-9, (now - this.windowStart) / 1000),
      elapsed_seconds: s.elapsed_seconds,
    };
    s.log_history.push({ kind: "train", ...entry });
    this.trainCsv.append({ ...entry });
    const scalars: Record<string, number> = {
      "train/learning_rate": entry.learning_rate,
      "train/tokens_per_second": entry.tokens_per_second, "train/epoch": entry.epoch,
    };
    if (entry.grad_norm !== null) scalars["train/grad_norm"] = entry.grad_norm;
    if (entry.loss !== null) scalars["train/loss"] = entry.loss;
    if (s.loss_scaler) scalars["train/loss_scale"] = s.loss_scaler.scale;
    this.track((trackers) => trackers.logMetrics(scalars, entry.step));
    const memory = this.model.memory({ resetPeak: true });
    this.log.info(`step ${entry.step}/${this.totalSteps}`, {
      epoch: entry.epoch, loss: entry.loss ?? undefined, learning_rate: entry.learning_rate, grad_norm: entry.grad_norm ?? undefined,
      ...(s.loss_scaler ? { loss_scale: s.loss_scaler.scale } : {}),
      tokens_per_second: Math.round(entry.tokens_per_second),
      ...memoryFields(memory),
      // On a GPU: how many of the window's micro-steps ran as a recording (one launch each).
      ...(memory.deviceTotalBytes !== null ? { replayed_micro_steps: this.replayedInWindow } : {}),
    });
    this.replayedInWindow = 0;
    s.log_window = { steps: 0, loss_sum: 0, loss_steps: 0, tokens: 0 };
    this.windowStart = now;
  }

  private metricOf(e: EvalLogEntry): number | undefined {
    const name = this.t.metric_for_best_model;
    if (name === "eval_loss") return e.eval_loss;
    if (name === "perplexity") return e.perplexity ?? Number.POSITIVE_INFINITY;
    return e.metrics[name] ?? e.metrics[name.replace(/^eval_/, "")];
  }

  /** Evaluates; returns true when early stopping says to stop. */
  private async evaluate(): Promise<boolean> {
    const s = this.state;
    const batchSize = this.t.eval_batch_size ?? this.config.data.batch_size;
    const loss = await evaluateLoss(this.model, this.data.valid, this.data.collate, batchSize);
    const metrics = this.options.generationMetrics
      ? await this.options.generationMetrics({ model: this.model, examples: this.data.valid, kind: this.data.kind, step: s.global_step })
      : {};
    const entry: EvalLogEntry = { step: s.global_step, epoch: s.epoch, eval_loss: loss.evalLoss, perplexity: loss.perplexity, metrics };
    const value = this.metricOf(entry);
    if (value === undefined) {
      throw new TrainConfigError(
        `train.metric_for_best_model "${this.t.metric_for_best_model}" is not among the evaluation's metrics (eval_loss, perplexity${Object.keys(metrics).map((k) => ", " + k).join("")})`,
      );
    }
    // Early stopping compares with the best before this evaluation (as transformers' callback does).
    const better = (a: number, b: number) => (s.greater_is_better ? a > b : a < b);
    const threshold = this.t.early_stopping.threshold;
    const improved = s.best_metric === null || (better(value, s.best_metric) && Math.abs(value - s.best_metric) > threshold);
    s.early_stopping_patience_counter = improved ? 0 : s.early_stopping_patience_counter + 1;
    if (s.best_metric === null || better(value, s.best_metric)) {
      s.best_metric = value;
      s.best_metric_step = s.global_step;
    }
    this.lastEval = { step: s.global_step, value };
    s.log_history.push({ kind: "eval", ...entry });
    const missing = this.validCsv.missingColumns({ ...metrics });
    if (missing.length > 0) this.log.warn("metrics missing from the header of valid.csv are not written there", { metrics: missing.join(", ") });
    this.validCsv.append({ step: entry.step, epoch: entry.epoch, eval_loss: entry.eval_loss, perplexity: entry.perplexity, ...metrics });
    // transformers' names: eval_loss -> eval/loss, a metric m -> eval/m.
    const scalars: Record<string, number> = { "eval/loss": entry.eval_loss };
    if (entry.perplexity !== null) scalars["eval/perplexity"] = entry.perplexity;
    for (const [name, value] of Object.entries(metrics)) scalars[`eval/${name}`] = value;
    this.track((trackers) => trackers.logMetrics(scalars, entry.step));
    const isBest = s.best_metric_step === s.global_step;
    this.log.info(`evaluation at step ${entry.step}`, {
      eval_loss: entry.eval_loss, perplexity: entry.perplexity ?? "inf", ...metrics, ...(isBest ? { best: true } : {}),
    });
    this.options.onEvaluation?.({ ...entry, isBest });
    const patience = this.t.early_stopping.patience;
    if (patience > 0 && s.early_stopping_patience_counter >= patience) {
      this.log.info(`early stopping: ${patience} evaluation(s) without improvement of ${this.t.metric_for_best_model}`, { best: s.best_metric, best_step: s.best_metric_step });
      return true;
    }
    return false;
  }

  private async save(): Promise<void> {
    const s = this.state;
    const step = s.global_step;
    // A checkpoint is the best one when this step's evaluation beats every saved checkpoint's.
    if (this.lastEval?.step === step) {
      const v = this.lastEval.value;
      const prev = s.best_checkpoint_metric;
      if (prev === null || (s.greater_is_better ? v > prev : v < prev)) {
        s.best_model_checkpoint = `checkpoint-${step}`;
        s.best_checkpoint_metric = v;
      }
    }
    const target = await saveCheckpoint({
      model: this.model, method: this.config.model.method, baseModelDir: this.config.model.path,
      checkpointsDir: this.paths.checkpoints, state: s,
    });
    this.lastCheckpoint = target;
    const deleted = rotateCheckpoints(this.paths.checkpoints, this.t.save_total_limit, this.bestCheckpointPath());
    this.log.info(`saved ${path.relative(this.paths.dir, target)}`, deleted.length ? { deleted: deleted.map((d) => path.basename(d)).join(", ") } : {});
    this.options.onCheckpoint?.({ step, path: target, deleted, best: this.bestCheckpointPath() });
  }

  /** final/: the best checkpoint's weights (load_best_model_at_end) or the model as it is now. */
  private async writeFinal(): Promise<string> {
    const temp = `${this.paths.final}.tmp`;
    rmSync(temp, { recursive: true, force: true });
    mkdirSync(temp, { recursive: true });
    const best = this.bestCheckpointPath();
    if (this.t.load_best_model_at_end && best) {
      for (const f of readdirSync(best)) {
        if (f !== OPTIMIZER_FILE && f !== TRAINER_STATE_FILE) copyFileSync(path.join(best, f), path.join(temp, f));
      }
      this.log.info(`final/ is the best checkpoint, ${path.basename(best)}`, { [this.t.metric_for_best_model]: this.state.best_checkpoint_metric });
    } else {
      if (this.t.load_best_model_at_end) this.log.warn("no evaluated checkpoint to load as the best; final/ is the last model");
      await writeWeights(this.model, this.config.model.method, temp, this.config.model.path);
    }
    renameFolderInto(temp, this.paths.final);
    return this.paths.final;
  }
}
