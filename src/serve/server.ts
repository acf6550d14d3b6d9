// `s2s-train serve`: an OpenAI-compatible HTTP server (node:http) for one model (+ adapter):
// GET /v1/models, POST /v1/completions, POST /v1/chat/completions (JSON or server-sent events),
// GET /health. Loopback by default. Generations run one at a time through a bounded queue; a
// client that disconnects cancels its generation; bad requests get OpenAI-shaped 4xx errors.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { loadModelForGeneration, type GenerationModelOptions } from "../generate/load-for-generation.js";
import { readChatTemplate } from "../data/chat-template.js";
import { ApiError, toApiError } from "./api-error.js";
import { handleChatCompletions } from "./chat-completions.js";
import { handleCompletions } from "./completions.js";
import { GenerationQueue } from "./generation-queue.js";
import { nowSeconds, sendError, sendJson, type ServeContext } from "./http-context.js";
import { readJsonBody } from "./request-body.js";

export interface ServeOptions extends GenerationModelOptions {
  /** Default 127.0.0.1 (this machine only). */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** The model id clients use (default: the model folder's name). */
  modelName?: string;
  /** Requests that may wait while one generates (default 16); more get 429. */
  maxQueue?: number;
  /** Largest request body in bytes (default 1 MiB); larger gets 413. */
  maxBodyBytes?: number;
  /** When set, requests need `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Log lines (default: stderr). */
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  host: string;
  port: number;
  modelName: string;
  context: ServeContext;
  /** Stops listening, cancels generations under way and closes connections. */
  close(): Promise<void>;
}

const ROUTES: Record<string, { method: "GET" | "POST"; handle?: typeof handleCompletions }> = {
  "/v1/completions": { method: "POST", handle: handleCompletions },
  "/v1/chat/completions": { method: "POST", handle: handleChatCompletions },
  "/v1/models": { method: "GET" },
  "/health": { method: "GET" },
};

function modelCard(ctx: ServeContext) {
  return { id: ctx.modelName, object: "model", created: ctx.created, owned_by: "s2s-train" };
}

async function route(ctx: ServeContext, apiKey: string | undefined, req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  let pathname = url.pathname.replace(/\/+$/, "") || "/";
  if (pathname.startsWith("/v1/models/")) {
    if (req.method !== "GET") throw new ApiError(405, `${req.method} is not allowed on ${pathname}; use GET`, "invalid_request_error", null, "method_not_allowed", { allow: "GET" });
    checkKey(apiKey, req);
    const id = decodeURIComponent(pathname.slice("/v1/models/".length));
    if (id !== ctx.modelName) throw new ApiError(404, `the model '${id}' does not exist here; this server serves '${ctx.modelName}'`, "not_found_error", "model", "model_not_found");
    return sendJson(res, 200, modelCard(ctx));
  }
  if (!pathname.startsWith("/v1/") && pathname !== "/health") pathname = `/v1${pathname}`;  // clients configured without /v1
  const r = ROUTES[pathname];
  if (!r) throw new ApiError(404, `no such endpoint: ${url.pathname} (this server has ${Object.keys(ROUTES).join(", ")})`, "not_found_error", null, "unknown_url");
  if (req.method !== r.method) {
    throw new ApiError(405, `${req.method} is not allowed on ${pathname}; use ${r.method}`, "invalid_request_error", null, "method_not_allowed", { allow: r.method });
  }
  if (pathname === "/health") {
    return sendJson(res, 200, { status: "ok", model: ctx.modelName, generating: ctx.queue.busy, waiting: ctx.queue.depth });
  }
  checkKey(apiKey, req);
  if (pathname === "/v1/models") return sendJson(res, 200, { object: "list", data: [modelCard(ctx)] });
  const body = await readJsonBody(req, ctx.maxBodyBytes);
  await r.handle!(ctx, body, res, signal);
}

function checkKey(apiKey: string | undefined, req: IncomingMessage): void {
  if (apiKey === undefined) return;
  if (req.headers.authorization !== `Bearer ${apiKey}`) {
    throw new ApiError(401, "missing or wrong API key: send Authorization: Bearer <key>", "authentication_error", null, "invalid_api_key");
  }
}

/** Serves an already loaded context (tests and runServe). */
export async function listen(ctx: ServeContext, options: Pick<ServeOptions, "host" | "port" | "apiKey"> = {}): Promise<RunningServer> {
  const host = options.host ?? "127.0.0.1";
  const active = new Set<AbortController>();
  const server: Server = createServer((req, res) => {
    const started = performance.now();
    const controller = new AbortController();
    active.add(controller);
    res.on("close", () => {
      active.delete(controller);
      if (!res.writableFinished) {
        controller.abort(new Error("the client disconnected"));
        ctx.log(`${req.method} ${req.url} client disconnected after ${Math.round(performance.now() - started)} ms; generation cancelled`);
      } else {
        ctx.log(`${req.method} ${req.url} ${res.statusCode} ${Math.round(performance.now() - started)} ms`);
      }
    });
    route(ctx, options.apiKey, req, res, controller.signal).catch((e: unknown) => {
      if (controller.signal.aborted) return;  // nobody to answer
      const error = toApiError(e);
      if (error.status >= 500) ctx.log(`${req.method} ${req.url} failed: ${error.message}`);
      if (!res.headersSent) sendError(res, error);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/v1`,
    host,
    port,
    modelName: ctx.modelName,
    context: ctx,
    close: () => new Promise<void>((resolve) => {
      for (const c of active) c.abort(new Error("the server is shutting down"));
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** Loads the model and starts serving it. */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const maxQueue = options.maxQueue ?? 16;
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) throw new RangeError(`serve: --max-body-bytes: expected an integer >= 1, got ${maxBodyBytes}`);
  const model = await loadModelForGeneration(options);
  const ctx: ServeContext = {
    model,
    modelName: options.modelName ?? path.basename(path.resolve(options.model)),
    created: nowSeconds(),
    queue: new GenerationQueue(maxQueue),
    chatTemplate: readChatTemplate(options.model),
    maxBodyBytes,
    log: options.log ?? ((line) => process.stderr.write(`${line}\n`)),
  };
  return listen(ctx, options);
}

/** `s2s-train serve`: serves until SIGINT / SIGTERM. */
export async function runServe(options: ServeOptions): Promise<void> {
  const server = await startServer(options);
  const log = server.context.log;
  log(`serving ${server.modelName} (${options.model}${options.adapter ? ` + ${options.adapter}` : ""}) at ${server.url}` +
    `${server.context.chatTemplate ? "" : " (no chat template: /v1/chat/completions answers 400)"}`);
  if (!["127.0.0.1", "localhost", "::1"].includes(server.host) && options.apiKey === undefined) {
    log(`warning: listening on ${server.host} without --api-key: anyone who can reach this address can use the model`);
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: shutting down`);
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      void server.close().then(resolve);
    };
    const onInt = () => stop("SIGINT");
    const onTerm = () => stop("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
  });
}
