// MLflow and W&B trackers against a loopback HTTP server that checks every request: the paths,
// methods, auth headers and JSON bodies the real services expect (MLflow REST api/2.0/mlflow;
// W&B's GraphQL upsertBucket and file_stream endpoints).
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { MlflowTracker } from "../src/track/mlflow.js";
import { startTrackers, trackingConfigSchema } from "../src/track/trackers.js";
import { WandbTracker } from "../src/track/wandb.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: any; // parsed JSON, checked field by field in the tests
}

type Handler = (req: Seen) => [number, unknown];

let server: Server;
let base: string;
let seen: Seen[];
let handler: Handler;

beforeEach(async () => {
  seen = [];
  server = createServer((req, res) => {
    let text = "";
    req.on("data", (c) => (text += c));
    req.on("end", () => {
      const entry: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: text ? JSON.parse(text) : undefined };
      seen.push(entry);
      const [status, body] = handler(entry);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

// A small MLflow server: experiments by name, runs, log-batch, update.
function mlflowHandler(existing: Record<string, string> = {}): Handler {
  return (req) => {
    if (req.method === "GET" && req.url.startsWith("/api/2.0/mlflow/experiments/get-by-name?")) {
      const name = new URL(req.url, base).searchParams.get("experiment_name")!;
      return existing[name]
        ? [200, { experiment: { experiment_id: existing[name], name } }]
        : [404, { error_code: "RESOURCE_DOES_NOT_EXIST", message: `Could not find experiment with name '${name}'` }];
    }
    if (req.method === "POST" && req.url === "/api/2.0/mlflow/experiments/create") return [200, { experiment_id: "7" }];
    if (req.method === "POST" && req.url === "/api/2.0/mlflow/runs/create") return [200, { run: { info: { run_id: "run-abc", experiment_id: req.body.experiment_id } } }];
    if (req.method === "POST" && (req.url === "/api/2.0/mlflow/runs/log-batch" || req.url === "/api/2.0/mlflow/runs/update")) return [200, {}];
    return [404, { error_code: "ENDPOINT_NOT_FOUND" }];
  };
}

describe("MLflow tracker", () => {
  it("creates the experiment and run, logs params and metrics in batches, finishes the run", async () => {
    handler = mlflowHandler();
    let t = 1_700_000_000_000;
    const tracker = await MlflowTracker.start({
      trackingUri: `${base}/`,
      experimentName: "my exp",
      runName: "run-1",
      params: { model: { path: "gpt2", lora: { r: 8 } }, lr: 0.001, tags: ["a", "b"] },
      env: { MLFLOW_TRACKING_TOKEN: "secret" },
      now: () => t++,
    });
    expect(tracker.runId).toBe("run-abc");
    await tracker.logMetrics({ "train/loss": 2.5, "eval/bleu": NaN }, 10);
    const many = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`m${i}`, i]));
    await tracker.logMetrics(many, 11);
    await tracker.close("finished");
    await tracker.close("finished"); // a second close sends nothing

    for (const r of seen) expect(r.headers.authorization).toBe("Bearer secret");
    const calls = seen.map((r) => `${r.method} ${r.url.split("?")[0]}`);
    expect(calls).toEqual([
      "GET /api/2.0/mlflow/experiments/get-by-name",
      "POST /api/2.0/mlflow/experiments/create",
      "POST /api/2.0/mlflow/runs/create",
      "POST /api/2.0/mlflow/runs/log-batch",
      "POST /api/2.0/mlflow/runs/log-batch",
      "POST /api/2.0/mlflow/runs/log-batch",
      "POST /api/2.0/mlflow/runs/log-batch",
      "POST /api/2.0/mlflow/runs/update",
    ]);
    expect(new URL(seen[0]!.url, base).searchParams.get("experiment_name")).toBe("my exp");
    expect(seen[1]!.body).toEqual({ name: "my exp" });
    expect(seen[2]!.body).toMatchObject({ experiment_id: "7", run_name: "run-1", start_time: 1_700_000_000_000 });
    expect(seen[2]!.body.tags).toContainEqual({ key: "mlflow.source.name", value: "s2s-train" });
    expect(seen[3]!.body).toEqual({
      run_id: "run-abc",
      params: [
        { key: "model.path", value: "gpt2" },
        { key: "model.lora.r", value: "8" },
        { key: "lr", value: "0.001" },
        { key: "tags", value: '["a","b"]' },
      ],
    });
    expect(seen[4]!.body).toEqual({
      run_id: "run-abc",
      metrics: [
        { key: "train/loss", value: 2.5, timestamp: 1_700_000_000_001, step: 10 },
        { key: "eval/bleu", value: "NaN", timestamp: 1_700_000_000_001, step: 10 },
      ],
    });
    expect(seen[5]!.body.metrics).toHaveLength(1000);
    expect(seen[6]!.body.metrics).toHaveLength(500);
    expect(seen[6]!.body.metrics[499]).toMatchObject({ key: "m1499", value: 1499, step: 11 });
    expect(seen[7]!.body).toEqual({ run_id: "run-abc", status: "FINISHED", end_time: 1_700_000_000_003 });
  });

  it("reuses an existing experiment and sends basic auth when configured so", async () => {
    handler = mlflowHandler({ existing: "3" });
    const tracker = await MlflowTracker.start({
      trackingUri: base, experimentName: "existing",
      env: { MLFLOW_TRACKING_USERNAME: "u", MLFLOW_TRACKING_PASSWORD: "p" },
    });
    await tracker.close("failed");
    expect(seen.map((r) => r.url.split("?")[0])).toEqual(["/api/2.0/mlflow/experiments/get-by-name", "/api/2.0/mlflow/runs/create", "/api/2.0/mlflow/runs/update"]);
    expect(seen[1]!.body.experiment_id).toBe("3");
    expect(seen[2]!.body.status).toBe("FAILED");
    expect(seen[0]!.headers.authorization).toBe(`Basic ${Buffer.from("u:p").toString("base64")}`);
  });

  it("a server error names the service, the URL and the answer", async () => {
    handler = () => [403, { error_code: "PERMISSION_DENIED", message: "no" }];
    await expect(MlflowTracker.start({ trackingUri: base, experimentName: "x", env: {} })).rejects.toThrow(
      /MLflow: GET http:\/\/127\.0\.0\.1:\d+\/api\/2\.0\/mlflow\/experiments\/get-by-name.* HTTP 403: .*PERMISSION_DENIED/,
    );
  });
});

describe("W&B tracker", () => {
  function wandbHandler(): Handler {
    return (req) => {
      if (req.url === "/graphql") {
        return [200, { data: { upsertBucket: { bucket: { id: "QnVja2V0", name: req.body.variables.name, displayName: "run-1", project: { name: "proj", entity: { name: "me" } } } } } }];
      }
      if (/^\/files\/me\/proj\/[a-z0-9]{8}\/file_stream$/.test(req.url)) return [200, { exitcode: null, limits: {} }];
      return [404, { error: "not found" }];
    };
  }

  it("creates the run with upsertBucket, streams history rows, writes the summary and completes", async () => {
    handler = wandbHandler();
    let t = 1000;
    const tracker = await WandbTracker.start({
      project: "proj", baseUrl: base, runName: "run-1", config: { lr: 0.1, model: "gpt2" },
      env: { WANDB_API_KEY: "k123" }, now: () => t,
    });
    t = 1002.5;
    await tracker.logMetrics({ "train/loss": 2 }, 5);
    t = 1010;
    await tracker.logMetrics({ "train/loss": 1.5, "eval/bleu": 20 }, 10);
    await tracker.close("finished");

    for (const r of seen) {
      expect(r.method).toBe("POST");
      expect(r.headers.authorization).toBe(`Basic ${Buffer.from("api:k123").toString("base64")}`);
    }
    const gql = seen[0]!;
    expect(gql.url).toBe("/graphql");
    expect(gql.body.query).toMatch(/upsertBucket\(input: \{name: \$name, modelName: \$project, entityName: \$entity/);
    const runId = gql.body.variables.name as string;
    expect(runId).toMatch(/^[a-z0-9]{8}$/);
    expect(gql.body.variables).toMatchObject({ project: "proj", entity: null, displayName: "run-1" });
    expect(JSON.parse(gql.body.variables.config)).toEqual({ lr: { value: 0.1, desc: null }, model: { value: "gpt2", desc: null } });
    expect(tracker.runPath).toBe(`me/proj/${runId}`);

    const stream = seen.slice(1);
    for (const r of stream) expect(r.url).toBe(`/files/me/proj/${runId}/file_stream`);
    expect(stream.map((r) => r.body)).toEqual([
      { files: { "wandb-history.jsonl": { offset: 0, content: [JSON.stringify({ "train/loss": 2, _step: 5, _runtime: 2.5, _timestamp: 1002.5 })] } } },
      { files: { "wandb-history.jsonl": { offset: 1, content: [JSON.stringify({ "train/loss": 1.5, "eval/bleu": 20, _step: 10, _runtime: 10, _timestamp: 1010 })] } } },
      { files: { "wandb-summary.json": { offset: 0, content: [JSON.stringify({ "train/loss": 1.5, "eval/bleu": 20 })] } } },
      { complete: true, exitcode: 0 },
    ]);
  });

  it("needs WANDB_API_KEY and reports GraphQL errors", async () => {
    handler = () => [200, { errors: [{ message: "permission denied for entity" }] }];
    await expect(WandbTracker.start({ project: "p", baseUrl: base, env: {} })).rejects.toThrow(/WANDB_API_KEY/);
    await expect(WandbTracker.start({ project: "p", baseUrl: base, env: { WANDB_API_KEY: "k" } })).rejects.toThrow(/permission denied for entity/);
  });
});

describe("startTrackers", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), "s2s-track-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("TensorBoard is on and the remote trackers off by default", async () => {
    handler = () => [500, {}];
    const config = trackingConfigSchema.parse({});
    expect(config).toEqual({ tensorboard: true });
    const trackers = await startTrackers(config, { runDir: dir });
    expect(trackers.trackers.map((t) => t.name)).toEqual(["tensorboard"]);
    await trackers.logMetrics({ "train/loss": 1 }, 1);
    await trackers.close("finished");
    expect(readdirSync(path.join(dir, "logs/tensorboard"))[0]).toMatch(/^events\.out\.tfevents\.\d{10}\./);
    expect(seen).toHaveLength(0);
  });

  it("starts MLflow from the config; a logging failure is reported, not thrown", async () => {
    let failLogging = false;
    const mlflow = mlflowHandler();
    handler = (req) => (failLogging && req.url.endsWith("log-batch") ? [503, { error_code: "TEMPORARILY_UNAVAILABLE" }] : mlflow(req));
    const warnings: string[] = [];
    const runDir = path.join(dir, "my-run");
    const config = trackingConfigSchema.parse({ tensorboard: false, mlflow: { tracking_uri: base } });
    const trackers = await startTrackers(config, { runDir, config: { lr: 1 }, env: {}, warn: (m) => warnings.push(m) });
    expect(seen.find((r) => r.url.endsWith("runs/create"))!.body.run_name).toBe("my-run");
    expect(seen.find((r) => r.url.endsWith("experiments/create"))!.body.name).toBe("s2s-train");
    failLogging = true;
    await trackers.logMetrics({ loss: 1 }, 1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^mlflow: logging metrics failed: MLflow: POST .*log-batch failed with HTTP 503/);
    await trackers.close("finished");
    expect(seen.at(-1)!.body.status).toBe("FINISHED");
  });

  it("refuses a config that is not what the schema expects", () => {
    expect(trackingConfigSchema.safeParse({ mlflow: { tracking_uri: "ftp://x" } }).success).toBe(false);
    expect(trackingConfigSchema.safeParse({ wandb: {} }).success).toBe(false);
    expect(trackingConfigSchema.safeParse({ tensorbord: true }).success).toBe(false);
  });
});
