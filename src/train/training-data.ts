// What the trainer needs from data preparation (src/data): the prepared examples, the epoch plan
// (micro-batches as indices, the same for the same arguments, which is what makes resume exact)
// and the collate function that pads a micro-batch into a native batch. This file is also the one
// place where the trainer asks src/data to load a config's data.
import type { TrainConfig } from "../config/schema.js";
import { makeCollate } from "../data/collate.js";
import { dataContextForModel } from "../data/context.js";
import { loadData } from "../data/load-data.js";
import { planEpoch } from "../data/plan-epoch.js";
import type { Collate, DataReport, Example, TaskKind } from "../data/types.js";

export interface EpochPlanOptions {
  batchSize: number;
  seed: number;
  /** From 0. */
  epoch: number;
  groupByLength: boolean;
}

/** Micro-batches of one epoch as indices into `examples`; deterministic in its arguments. */
export type PlanEpoch = (examples: readonly Example[], options: EpochPlanOptions) => number[][];

export interface TrainingData {
  kind: TaskKind;
  train: readonly Example[];
  valid: readonly Example[];
  planEpoch: PlanEpoch;
  collate: Collate;
  report?: DataReport;
}

/**
 * Loads and prepares `config.data` for the model at `config.model.path` (its tokenizer and kind;
 * no weights are read), with src/data's epoch plan and collate. (Paths in `config` are absolute
 * already.)
 */
export async function loadTrainingData(config: TrainConfig): Promise<TrainingData> {
  const ctx = dataContextForModel(config.model.path, process.cwd());
  const data = await loadData(config.data, ctx);
  return {
    kind: data.kind,
    train: data.train,
    valid: data.valid,
    planEpoch,
    collate: makeCollate(data.kind, ctx.padTokenId, {
      padToMultipleOf: config.data.pad_to_multiple_of,
      ...(ctx.maxPositions !== undefined ? { maxInputLength: ctx.maxPositions } : {}),
    }),
    report: data.report,
  };
}
