// What every endpoint handler gets: the served model and its name, the generation queue, the
// limits, and the response helpers (JSON, OpenAI errors, server-sent events).
import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { ChatTemplate } from "../data/chat-template.js";
import type { Model } from "../models/model.js";
import { ApiError } from "./api-error.js";
import type { GenerationQueue } from "./generation-queue.js";

export interface ServeContext {
  model: Model;
  /** The id clients name in `model` (and /v1/models lists). */
  modelName: string;
  /** When the model was loaded (seconds since the epoch), /v1/models' `created`. */
  created: number;
  queue: GenerationQueue;
  /** The folder's chat template; undefined when it has none. */
  chatTemplate: ChatTemplate | undefined;
  maxBodyBytes: number;
  /** One line per request and event (stderr by default). */
  log: (line: string) => void;
}

export function completionId(prefix: string): string {
  return `${prefix}-${randomUUID().replace(/-/g, "")}`;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, error: ApiError): void {
  sendJson(res, error.status, error.body(), error.headers);
}

/** A 404 for a model name the server does not serve. */
export function checkModelName(ctx: ServeContext, name: string): void {
  if (name !== ctx.modelName) {
    throw new ApiError(404, `the model '${name}' does not exist here; this server serves '${ctx.modelName}' (see /v1/models)`,
      "not_found_error", "model", "model_not_found");
  }
}

/**
 * Server-sent events in OpenAI's streaming format: `data: <json>` per chunk, `data: [DONE]` at
 * the end. Headers go out with the first event, so errors found before it are plain JSON errors.
 */
export class EventStream {
  private started = false;

  constructor(private readonly res: ServerResponse) {}

  get isStarted(): boolean {
    return this.started;
  }

  send(data: unknown): void {
    if (this.closed) return;  // the client went away; its generation is being cancelled
    this.start();
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** An error after the stream began: sent as an event carrying OpenAI's error object. */
  fail(error: ApiError): void {
    this.send(error.body());
    this.done();
  }

  done(): void {
    if (this.closed) return;
    this.start();
    this.res.end("data: [DONE]\n\n");
  }

  private get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    this.res.flushHeaders();
  }
}
