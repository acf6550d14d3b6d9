// The public API of s2s-train for other Node tools: `import { ... } from "s2s-train"`.
export { Tensor, type DTypeName } from "./tensor.js";
export { matmul, type MatmulArgs } from "./matmul.js";
export { layerNorm, layerNormBackward, softmax, gelu, attention, crossEntropy, adamwUpdate, type AttentionArgs } from "./ops.js";
export type { AdamWOptions, CrossEntropyOptions, CudaInfo, CudaDeviceInfo, DeviceName, ModelMemory } from "../bindings/native.js";
export { nativeInfo, setNumThreads, setIsa, type IsaName, type NativeInfo } from "./system.js";
export { runDoctor, formatDoctor, type DoctorReport } from "./doctor.js";
export { isNativeError, type NativeError } from "../bindings/native.js";
export {
  readSafetensors,
  writeSafetensors,
  readShardedSafetensors,
  safetensorsToTensor,
  SafetensorsIndexSchema,
  type SafetensorsContents,
  type SafetensorsDType,
  type SafetensorsTensor,
  type SafetensorsInput,
  type SafetensorsIndex,
  type ShardedSafetensors,
} from "./io/safetensors.js";
export { Model, type LoadModelOptions, type LoraOptions, type Batch, type OptimizerStepOptions } from "./models/model.js";
export { inspectModelFolder, type ModelFolder } from "./models/model-folder.js";
export { SUPPORTED_MODEL_TYPES, type ModelConfig } from "./models/hf-config.js";
export { loadTokenizer, type Tokenizer } from "./models/tokenizer.js";
export { createModelFolder, type CreateModelFolderOptions } from "./models/create-model-folder.js";
export { type CreateModelOptions } from "./models/model.js";
export { loadData, type DataContext } from "./data/load-data.js";
export { dataContextForModel, type ModelDataContext } from "./data/context.js";
export { planEpoch, type PlanOptions } from "./data/plan-epoch.js";
export { makeCollate, type CollateOptions } from "./data/collate.js";
export { buildWordPieceTokenizer, type BuildTokenizerOptions, type BuiltTokenizer } from "./data/build-tokenizer.js";
export { DataError } from "./data/errors.js";
export { dataConfigSchema, type DataConfig } from "./data/config.js";
export type { Example, PreparedData, DataReport, Collate, TaskKind } from "./data/types.js";
export {
  train, NonFiniteLossError, TrainConfigError, TrackingStartError,
  type TrainOptions, type TrainResult, type ProgressEvent, type EvaluationEvent, type CheckpointEvent,
} from "./train/trainer.js";
export { runTrain, InterruptedRunError, type RunTrainOptions } from "./train/run-train.js";
export type { TrainingData, PlanEpoch, EpochPlanOptions } from "./train/training-data.js";
export type { GenerationMetrics, GenerationMetricsContext } from "./train/evaluate.js";
export type { ConsoleOptions } from "./train/run-log.js";
export { readTrainerState, type TrainerState } from "./train/trainer-state.js";
export { resolveConfig, ConfigError, type ConfigSources } from "./config/load.js";
export { trainConfigSchema, type TrainConfig, type TrainConfigInput } from "./config/schema.js";
export { runInit, defaultConfig, type InitRunOptions } from "./config/init-run.js";
export {
  computeMetrics,
  parseMetricNames,
  METRIC_NAMES,
  type MetricName,
  type MetricsResult,
  type MetricScores,
  type ComputeMetricsOptions,
} from "./metrics/compute.js";
export { corpusBleu, sentenceBleu, bleuFromStatistics, type BleuOptions, type BleuScore } from "./metrics/bleu.js";
export { corpusChrf, sentenceChrf, type ChrfOptions } from "./metrics/chrf.js";
export { rougeScore, rougeScoreMulti, rougeTokenize, type RougeScore, type RougeOptions } from "./metrics/rouge.js";
export { porterStem } from "./metrics/porter-stemmer.js";
export { normalizeAnswer, exactMatch, tokenF1, softExactMatch, type QaRule, type SoftMatch } from "./metrics/qa.js";
export { perplexity } from "./metrics/perplexity.js";
export { TensorBoardWriter } from "./track/tensorboard.js";
export { MlflowTracker, type MlflowOptions } from "./track/mlflow.js";
export { WandbTracker, type WandbOptions } from "./track/wandb.js";
export { startTrackers, trackingConfigSchema, Trackers, type TrackingConfig } from "./track/trackers.js";
export type { Tracker, RunStatus } from "./track/tracker.js";
export { runReport, type ReportOptions, type ReportResult } from "./report/report.js";
export { runEval, type RunEvalOptions, type RunEvalResult } from "./eval/run-eval.js";
export {
  evaluateGeneration, type GenerationExample, type GenerationEvaluation, type EvaluateGenerationOptions, type PredictionRecord,
} from "./eval/evaluate-generation.js";
export { generationMetricsFor } from "./eval/generation-metrics.js";
export { readEvalRows, type EvalRow, type EvalFields } from "./eval/read-eval-rows.js";
export { loadLocalBackend, ModelGenerator, LocalModelBackend } from "./llm/local-backend.js";
export { readRunFolder, type RunFolder } from "./report/run-folder.js";
export {
  generateOptionsSchema,
  type GenerateOptions,
  type GenerateStreamOptions,
  type GenerateInput,
  type GenerateResult,
  type GeneratedSequence,
  type GenerationStream,
  type FinishReason,
  type StreamChunk,
  type TokenEvent,
} from "./generate/options.js";
export { GenerateOptionsError } from "./generate/resolve.js";
export { runGenerateCommand, type GenerateCommandOptions, type GenerateRow } from "./generate/run-generate-command.js";
export { loadModelForGeneration, type GenerationModelOptions } from "./generate/load-for-generation.js";
export { startServer, runServe, type ServeOptions, type RunningServer } from "./serve/server.js";
export { runPipeline, pipelineTrainConfig, type RunPipelineOptions, type PipelineResult, type PipelineStage } from "./synth/run-pipeline.js";
export { loadPipelineConfig, parsePipelineConfig, pipelineConfigSchema, type PipelineConfig } from "./synth/pipeline-config.js";
