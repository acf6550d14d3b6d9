// Weights & Biases over the HTTP endpoints its own client uses, so a run shows up in W&B without
// the Python client: the `upsertBucket` GraphQL mutation creates the run (with the config in W&B's
// {key: {value, desc}} form), history rows are appended to `wandb-history.jsonl` through the
// run's file_stream endpoint, and a final file_stream request writes the summary and marks the
// run complete with its exit code. The API key comes from WANDB_API_KEY (HTTP basic, user "api").
import { randomBytes } from "node:crypto";
import { requestJson } from "./http-json.js";
import type { RunStatus, Tracker } from "./tracker.js";

export interface WandbOptions {
  project: string;
  /** Team or user; the API key's default entity when absent. */
  entity?: string;
  /** Defaults to https://api.wandb.ai (or WANDB_BASE_URL). */
  baseUrl?: string;
  /** The run's display name. */
  runName?: string;
  config?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Seconds since the epoch; defaults to now. */
  now?: () => number;
}

const UPSERT_RUN = `mutation UpsertBucket($name: String, $project: String, $entity: String, $displayName: String, $config: JSONString) {
  upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, displayName: $displayName, config: $config}) {
    bucket { id name displayName project { name entity { name } } }
  }
}`;

/** A run id like W&B's own: 8 characters of [a-z0-9]. */
function newRunId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(randomBytes(8), (b) => alphabet[b % alphabet.length]).join("");
}

interface UpsertAnswer {
  data?: { upsertBucket?: { bucket?: { name?: string; project?: { name?: string; entity?: { name?: string } } } } };
  errors?: { message?: string }[];
}

export class WandbTracker implements Tracker {
  readonly name = "wandb";
  private historyLines = 0;
  private readonly summary: Record<string, number> = {};
  private closed = false;

  private constructor(
    private readonly fileStreamUrl: string,
    private readonly headers: Record<string, string>,
    private readonly startTime: number,
    private readonly now: () => number,
    /** The run's path, entity/project/run-id, as W&B shows it. */
    readonly runPath: string,
  ) {}

  static async start(options: WandbOptions): Promise<WandbTracker> {
    const env = options.env ?? process.env;
    const apiKey = env.WANDB_API_KEY;
    if (!apiKey) throw new Error("W&B: set WANDB_API_KEY in the environment to log to Weights & Biases (tracking.wandb in the config)");
    const base = (options.baseUrl ?? env.WANDB_BASE_URL ?? "https://api.wandb.ai").replace(/\/+$/, "");
    const headers = { authorization: `Basic ${Buffer.from(`api:${apiKey}`).toString("base64")}` };
    const now = options.now ?? (() => Date.now() / 1000);
    const config = Object.fromEntries(Object.entries(options.config ?? {}).map(([k, value]) => [k, { value, desc: null }]));
    const answer = (await requestJson({
      service: "W&B", method: "POST", url: `${base}/graphql`, headers,
      body: {
        query: UPSERT_RUN,
        variables: { name: newRunId(), project: options.project, entity: options.entity ?? null, displayName: options.runName ?? null, config: JSON.stringify(config) },
      },
    })) as UpsertAnswer;
    if (answer.errors?.length) throw new Error(`W&B: creating the run failed: ${answer.errors.map((e) => e.message).join("; ")}`);
    const bucket = answer.data?.upsertBucket?.bucket;
    const entity = bucket?.project?.entity?.name ?? options.entity;
    const project = bucket?.project?.name ?? options.project;
    if (!bucket?.name || !entity) throw new Error(`W&B: ${base}/graphql returned no run (data.upsertBucket.bucket)`);
    const path = `${entity}/${project}/${bucket.name}`;
    return new WandbTracker(`${base}/files/${path}/file_stream`, headers, now(), now, path);
  }

  private stream(body: unknown): Promise<unknown> {
    return requestJson({ service: "W&B", method: "POST", url: this.fileStreamUrl, headers: this.headers, body });
  }

  async logMetrics(metrics: Record<string, number>, step: number): Promise<void> {
    if (this.closed) throw new Error("W&B: the run is closed");
    const t = this.now();
    const row = { ...metrics, _step: step, _runtime: t - this.startTime, _timestamp: t };
    // offset = lines already in the file, so the server can drop a retried duplicate.
    await this.stream({ files: { "wandb-history.jsonl": { offset: this.historyLines, content: [JSON.stringify(row)] } } });
    this.historyLines += 1;
    Object.assign(this.summary, metrics);
  }

  async close(status: RunStatus): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.stream({ files: { "wandb-summary.json": { offset: 0, content: [JSON.stringify(this.summary)] } } });
    await this.stream({ complete: true, exitcode: status === "finished" ? 0 : 1 });
  }
}
