// What every experiment tracker (TensorBoard files, MLflow, W&B) offers the trainer.

export type RunStatus = "finished" | "failed";

export interface Tracker {
  /** For messages: "tensorboard", "mlflow", "wandb". */
  readonly name: string;
  /** Scalars at a step; names like "train/loss", "eval/bleu". */
  logMetrics(metrics: Record<string, number>, step: number): Promise<void>;
  /** Optional: the run goes on from a checkpoint at `step`, so later steps will be logged again. */
  resume?(step: number): Promise<void>;
  /** Ends the run; the tracker accepts nothing afterwards. */
  close(status: RunStatus): Promise<void>;
}

/** Flattens nested config objects into "a.b.c" keys with string values (for MLflow params). */
export function flattenParams(value: unknown, prefix = "", out: Record<string, string> = {}): Record<string, string> {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flattenParams(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = typeof value === "string" ? value : JSON.stringify(value) ?? "null";
  }
  return out;
}
