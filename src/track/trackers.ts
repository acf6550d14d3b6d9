// The `tracking:` section of a training config and the trackers it starts: TensorBoard event
// files under <run>/logs/tensorboard (on by default, local), MLflow and W&B (off unless
// configured; credentials from the environment, never from the config file). During a run a
// remote tracker that fails to log is reported and skipped rather than stopping training.
import path from "node:path";
import { z } from "zod";
import { MlflowTracker } from "./mlflow.js";
import { TensorBoardWriter } from "./tensorboard.js";
import type { RunStatus, Tracker } from "./tracker.js";
import { WandbTracker } from "./wandb.js";

export const trackingConfigSchema = z
  .strictObject({
    tensorboard: z.boolean().default(true).describe("Write TensorBoard event files to <run>/logs/tensorboard"),
    mlflow: z
      .strictObject({
        tracking_uri: z.url({ protocol: /^https?$/ }).describe("MLflow tracking server, e.g. http://127.0.0.1:5000 (token: MLFLOW_TRACKING_TOKEN)"),
        experiment_name: z.string().min(1).default("s2s-train").describe("Experiment to log the run under (created if missing)"),
        run_name: z.string().optional().describe("Run name shown by MLflow; the run folder's name by default"),
      })
      .optional()
      .describe("Log to an MLflow tracking server (off when absent)"),
    wandb: z
      .strictObject({
        project: z.string().min(1).describe("W&B project (key: WANDB_API_KEY)"),
        entity: z.string().optional().describe("W&B team or user; the API key's default when absent"),
        base_url: z.url({ protocol: /^https?$/ }).optional().describe("W&B server; https://api.wandb.ai (or WANDB_BASE_URL) by default"),
        run_name: z.string().optional().describe("Run name shown by W&B; the run folder's name by default"),
      })
      .optional()
      .describe("Log to Weights & Biases (off when absent)"),
  })
  .describe("Experiment trackers");

export type TrackingConfig = z.infer<typeof trackingConfigSchema>;

/** TensorBoard as a Tracker. */
class TensorBoardTracker implements Tracker {
  readonly name = "tensorboard";
  constructor(readonly writer: TensorBoardWriter) {}
  async logMetrics(metrics: Record<string, number>, step: number): Promise<void> {
    this.writer.addScalars(metrics, step);
  }
  async resume(step: number): Promise<void> {
    // Steps up to the checkpoint's stay; TensorBoard drops what older files have after it.
    this.writer.addSessionStart(step + 1);
  }
  async close(): Promise<void> {
    this.writer.close();
  }
}

export interface StartTrackersOptions {
  /** The run folder (runs/<name>). */
  runDir: string;
  /** The resolved config, logged as MLflow params and W&B config. */
  config?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Where logging failures are reported; stderr by default. */
  warn?: (message: string) => void;
}

/** Every configured tracker behind one Tracker. */
export class Trackers implements Tracker {
  readonly name = "trackers";
  private readonly failures = new Map<string, number>();

  constructor(readonly trackers: readonly Tracker[], private readonly warn: (message: string) => void) {}

  private async each(what: string, call: (t: Tracker) => Promise<void>): Promise<void> {
    await Promise.all(
      this.trackers.map(async (t) => {
        try {
          await call(t);
        } catch (e) {
          const n = (this.failures.get(t.name) ?? 0) + 1;
          this.failures.set(t.name, n);
          if (n <= 3) this.warn(`${t.name}: ${what} failed: ${(e as Error).message}${n === 3 ? " (further failures not reported)" : ""}`);
        }
      }),
    );
  }

  logMetrics(metrics: Record<string, number>, step: number): Promise<void> {
    return this.each("logging metrics", (t) => t.logMetrics(metrics, step));
  }

  resume(step: number): Promise<void> {
    return this.each("marking the resume", async (t) => t.resume?.(step));
  }

  close(status: RunStatus): Promise<void> {
    return this.each("closing the run", (t) => t.close(status));
  }
}

/**
 * Starts the trackers `config` asks for. Starting is strict — a bad URL, a missing key or a server
 * that refuses the run throws, before any training time is spent; later logging is lenient.
 */
export async function startTrackers(config: TrackingConfig, options: StartTrackersOptions): Promise<Trackers> {
  const runName = path.basename(path.resolve(options.runDir));
  const env = options.env ?? process.env;
  const started: Tracker[] = [];
  try {
    if (config.tensorboard) started.push(new TensorBoardTracker(TensorBoardWriter.open(path.join(options.runDir, "logs", "tensorboard"))));
    if (config.mlflow) {
      started.push(
        await MlflowTracker.start({
          trackingUri: config.mlflow.tracking_uri,
          experimentName: config.mlflow.experiment_name,
          runName: config.mlflow.run_name ?? runName,
          params: options.config,
          env,
        }),
      );
    }
    if (config.wandb) {
      started.push(
        await WandbTracker.start({
          project: config.wandb.project,
          entity: config.wandb.entity,
          baseUrl: config.wandb.base_url,
          runName: config.wandb.run_name ?? runName,
          config: options.config,
          env,
        }),
      );
    }
  } catch (e) {
    await Promise.allSettled(started.map((t) => t.close("failed")));
    throw e;
  }
  return new Trackers(started, options.warn ?? ((m) => process.stderr.write(`s2s-train: warning: ${m}\n`)));
}
