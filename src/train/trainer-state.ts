// trainer_state.json: everything besides weights and optimizer moments that a resumed run needs
// to continue exactly where the checkpoint was taken (Hugging Face Trainer's file, extended with
// the sampler position and the loss window of the next log line). Read back through zod, so a
// damaged file is an error naming the file and the field.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { FileFormatError, parseJsonText, validate } from "../models/json-file.js";
import { writeFileAtomic } from "../io/atomic-write.js";

const number = z.number();

export const trainLogEntrySchema = z.object({
  step: z.number().int().positive(),
  epoch: number,
  loss: number.nullable(),
  learning_rate: number,
  /** null when the window's last step was skipped (a float16 loss-scale overflow). */
  grad_norm: number.nullable(),
  tokens_per_second: number,
  elapsed_seconds: number,
});
export type TrainLogEntry = z.infer<typeof trainLogEntrySchema>;

export const evalLogEntrySchema = z.object({
  step: z.number().int().min(0),
  epoch: number,
  eval_loss: number,
  /** exp(eval_loss); null where that overflows. */
  perplexity: number.nullable(),
  /** Generation-based metrics by name. */
  metrics: z.record(z.string(), number),
});
export type EvalLogEntry = z.infer<typeof evalLogEntrySchema>;

export const trainerStateSchema = z.strictObject({
  format: z.literal("s2s-train/trainer_state@1"),
  global_step: z.number().int().min(0),
  /**
   * Optimizer updates applied: global_step less the steps a float16 loss-scale overflow skipped
   * (AdamW's step count and the learning-rate schedule's position, as in Hugging Face's Trainer,
   * whose scheduler does not advance on a skipped step). Absent in older checkpoints: global_step.
   */
  optimizer_steps: z.number().int().min(0).optional(),
  /** float16 training's dynamic loss scale (torch GradScaler's scale and growth tracker) and the steps it skipped. */
  loss_scaler: z.strictObject({ scale: number.positive(), growth_tracker: z.number().int().min(0), skipped_steps: z.number().int().min(0) }).nullable().optional(),
  /** Fractional epochs done, as Hugging Face logs them. */
  epoch: number,
  max_steps: z.number().int().positive(),
  /** Where the next micro-batch comes from: epoch (from 0) and index into that epoch's plan. */
  sampler: z.strictObject({ epoch: z.number().int().min(0), next_batch: z.number().int().min(0) }),
  /** Nothing random carries state: dropout seeds are drawn from (seed, step, micro-batch), the data order from (seed, epoch). */
  rng: z.strictObject({ seed: z.number().int().min(0), scheme: z.string() }),
  metric_for_best_model: z.string(),
  greater_is_better: z.boolean(),
  /** The best evaluation so far (early stopping compares against it). */
  best_metric: number.nullable(),
  best_metric_step: z.number().int().nullable(),
  /** The best saved checkpoint (folder name under checkpoints/) and its metric. */
  best_model_checkpoint: z.string().nullable(),
  best_checkpoint_metric: number.nullable(),
  early_stopping_patience_counter: z.number().int().min(0),
  /** Steps since the last train log line, averaged into the next one. */
  log_window: z.strictObject({ steps: z.number().int().min(0), loss_sum: number, loss_steps: z.number().int().min(0), tokens: number }),
  total_tokens: number,
  /** Wall-clock seconds of training so far, over every session of the run. */
  elapsed_seconds: number,
  log_history: z.array(z.union([z.object({ kind: z.literal("train") }).extend(trainLogEntrySchema.shape),
                                z.object({ kind: z.literal("eval") }).extend(evalLogEntrySchema.shape)])),
});
export type TrainerState = z.infer<typeof trainerStateSchema>;

export const TRAINER_STATE_FILE = "trainer_state.json";
export const RNG_SCHEME = "dropout seed = splitmix64(seed, step, micro-batch); data order = planEpoch(seed, epoch)";

export function readTrainerState(file: string): TrainerState {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(file, code === "ENOENT" ? "file not found (is this a checkpoint folder?)" : `cannot be read (${code ?? e})`);
  }
  return validate(trainerStateSchema, parseJsonText(text, file), file);
}

export function writeTrainerState(file: string, state: TrainerState): void {
  writeFileAtomic(file, JSON.stringify(state, null, 2) + "\n");
}
