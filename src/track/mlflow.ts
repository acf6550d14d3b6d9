// MLflow tracking over its REST API (api/2.0/mlflow), so a run shows up on an MLflow server
// without the Python client: the experiment is found or created by name, a run is created with
// the config as params, metrics go in `runs/log-batch` requests (MLflow's limits: 1000 metrics,
// 100 params per request), and the run is marked FINISHED or FAILED at the end.
// Credentials come from the environment as for MLflow's own client: MLFLOW_TRACKING_TOKEN
// (bearer), or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic).
import { HttpJsonError, requestJson } from "./http-json.js";
import { flattenParams, type RunStatus, type Tracker } from "./tracker.js";

export interface MlflowOptions {
  /** http(s)://host:port of the tracking server. */
  trackingUri: string;
  experimentName: string;
  runName?: string;
  /** Logged once as params (flattened to "a.b" keys). */
  params?: Record<string, unknown>;
  tags?: Record<string, string>;
  env?: NodeJS.ProcessEnv;
  /** Milliseconds since the epoch; defaults to Date.now. */
  now?: () => number;
}

const MAX_PARAMS_PER_BATCH = 100;
const MAX_METRICS_PER_BATCH = 1000;
// Every MLflow server since 1.x keeps param values of 500 characters (2.x: 6000); longer values
// are cut to 500 so that no server rejects the batch.
const MAX_PARAM_VALUE = 500;

function authHeaders(env: NodeJS.ProcessEnv): Record<string, string> {
  if (env.MLFLOW_TRACKING_TOKEN) return { authorization: `Bearer ${env.MLFLOW_TRACKING_TOKEN}` };
  if (env.MLFLOW_TRACKING_USERNAME) {
    const basic = Buffer.from(`${env.MLFLOW_TRACKING_USERNAME}:${env.MLFLOW_TRACKING_PASSWORD ?? ""}`).toString("base64");
    return { authorization: `Basic ${basic}` };
  }
  return {};
}

// proto3 JSON has no literal for NaN or infinities; MLflow's server accepts these strings.
function metricValue(v: number): number | string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "-Infinity";
  return v;
}

export class MlflowTracker implements Tracker {
  readonly name = "mlflow";
  private closed = false;

  private constructor(
    private readonly api: string,
    private readonly headers: Record<string, string>,
    readonly runId: string,
    private readonly now: () => number,
  ) {}

  private post(endpoint: string, body: unknown): Promise<unknown> {
    return requestJson({ service: "MLflow", method: "POST", url: `${this.api}/${endpoint}`, headers: this.headers, body });
  }

  /** Finds or creates the experiment, creates the run and logs the params. */
  static async start(options: MlflowOptions): Promise<MlflowTracker> {
    const api = `${options.trackingUri.replace(/\/+$/, "")}/api/2.0/mlflow`;
    const headers = authHeaders(options.env ?? process.env);
    const now = options.now ?? Date.now;
    const experimentId = await findOrCreateExperiment(api, headers, options.experimentName);
    const tags = Object.entries({ "mlflow.source.name": "s2s-train", ...options.tags }).map(([key, value]) => ({ key, value }));
    const created = (await requestJson({
      service: "MLflow", method: "POST", url: `${api}/runs/create`, headers,
      body: { experiment_id: experimentId, start_time: now(), ...(options.runName ? { run_name: options.runName } : {}), tags },
    })) as { run?: { info?: { run_id?: string } } };
    const runId = created.run?.info?.run_id;
    if (!runId) throw new Error(`MLflow: runs/create at ${api} returned no run.info.run_id`);
    const tracker = new MlflowTracker(api, headers, runId, now);
    const params = Object.entries(flattenParams(options.params ?? {})).map(([key, value]) => ({ key, value: value.slice(0, MAX_PARAM_VALUE) }));
    for (let i = 0; i < params.length; i += MAX_PARAMS_PER_BATCH) {
      await tracker.post("runs/log-batch", { run_id: runId, params: params.slice(i, i + MAX_PARAMS_PER_BATCH) });
    }
    return tracker;
  }

  async logMetrics(metrics: Record<string, number>, step: number): Promise<void> {
    if (this.closed) throw new Error("MLflow: the run is closed");
    const timestamp = this.now();
    const entries = Object.entries(metrics).map(([key, value]) => ({ key, value: metricValue(value), timestamp, step }));
    for (let i = 0; i < entries.length; i += MAX_METRICS_PER_BATCH) {
      await this.post("runs/log-batch", { run_id: this.runId, metrics: entries.slice(i, i + MAX_METRICS_PER_BATCH) });
    }
  }

  async close(status: RunStatus): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.post("runs/update", { run_id: this.runId, status: status === "finished" ? "FINISHED" : "FAILED", end_time: this.now() });
  }
}

async function findOrCreateExperiment(api: string, headers: Record<string, string>, name: string): Promise<string> {
  try {
    const found = (await requestJson({
      service: "MLflow", method: "GET", headers,
      url: `${api}/experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`,
    })) as { experiment?: { experiment_id?: string } };
    if (found.experiment?.experiment_id) return found.experiment.experiment_id;
  } catch (e) {
    // A missing experiment is a 404 RESOURCE_DOES_NOT_EXIST; anything else is a real failure.
    if (!(e instanceof HttpJsonError && e.status === 404)) throw e;
  }
  const created = (await requestJson({ service: "MLflow", method: "POST", url: `${api}/experiments/create`, headers, body: { name } })) as {
    experiment_id?: string;
  };
  if (!created.experiment_id) throw new Error(`MLflow: experiments/create at ${api} returned no experiment_id`);
  return created.experiment_id;
}
