// A polite HTTP client for public APIs: a descriptive User-Agent on every request, a limit on
// concurrent requests, timeouts, retries with exponential backoff that honour Retry-After, and
// an optional on-disk cache. An API that reports "try later" inside a 200 body (MediaWiki's
// maxlag) tells the client through `retryHint`.
import { DiskCache } from "./disk-cache.js";
import { Semaphore } from "../util/semaphore.js";
import { backoffMs, parseRetryAfter, sleep } from "../util/sleep.js";

export interface HttpClientOptions {
  userAgent: string;
  concurrency: number;
  maxRetries: number;
  timeoutMs: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  cache?: DiskCache;
}

export class HttpError extends Error {
  readonly code = "S2S_HTTP";
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = "HttpError";
  }
}

/** Returned by `retryHint` for a 200 response whose body says to retry later. */
export interface RetryHint {
  retryAfterMs?: number;
  why: string;
}

export interface GetJsonOptions {
  /** Read from and write to the cache (default true when the client has one). */
  cache?: boolean;
  /** Inspects a parsed 200 body; a hint means "do not use this, retry later". */
  retryHint?: (body: unknown, headers: Headers) => RetryHint | undefined;
  signal?: AbortSignal;
}

const retryableStatus = new Set([408, 425, 429, 500, 502, 503, 504]);

export class PoliteHttpClient {
  private readonly limit: Semaphore;
  /** Requests sent over the network (not served from the cache), for logs and tests. */
  requests = 0;

  constructor(private readonly options: HttpClientOptions) {
    this.limit = new Semaphore(options.concurrency);
  }

  async getJson(url: string, options: GetJsonOptions = {}): Promise<unknown> {
    const useCache = (options.cache ?? true) && this.options.cache !== undefined;
    if (useCache) {
      const hit = this.options.cache!.get(url);
      if (hit !== undefined) return JSON.parse(hit);
    }
    const base = this.options.baseDelayMs ?? 1000;
    const max = this.options.maxDelayMs ?? 60_000;
    let lastError = "";
    for (let attempt = 0; attempt <= this.options.maxRetries; attempt++) {
      const outcome = await this.limit.run(() => this.attempt(url, options));
      if (outcome.ok) {
        if (useCache) this.options.cache!.set(url, outcome.text);
        return outcome.body;
      }
      if (!outcome.retryable) throw new HttpError(`GET ${url}: ${outcome.why}`, outcome.status);
      lastError = outcome.why;
      if (attempt < this.options.maxRetries) {
        // The server's own Retry-After wins over our backoff when it asks for longer.
        const delay = Math.max(outcome.retryAfterMs ?? 0, backoffMs(attempt, base, max));
        await sleep(Math.min(delay, max), options.signal);
      }
    }
    throw new HttpError(`GET ${url}: gave up after ${this.options.maxRetries + 1} attempts; last: ${lastError}`);
  }

  private async attempt(url: string, options: GetJsonOptions): Promise<
    | { ok: true; body: unknown; text: string }
    | { ok: false; retryable: boolean; why: string; status?: number; retryAfterMs?: number }
  > {
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    this.requests++;
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, { headers: { "user-agent": this.options.userAgent, accept: "application/json" }, signal });
      text = await response.text();
    } catch (e) {
      if (options.signal?.aborted) throw options.signal.reason;
      const why = timeout.aborted ? `no answer within ${this.options.timeoutMs} ms`
        : `cannot reach the server (${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message})`;
      return { ok: false, retryable: true, why };
    }
    const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
    if (!response.ok) {
      return { ok: false, retryable: retryableStatus.has(response.status), why: `HTTP ${response.status} ${text.slice(0, 200)}`,
        status: response.status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { ok: false, retryable: true, why: `the response is not JSON: ${text.slice(0, 200)}` };
    }
    const hint = options.retryHint?.(body, response.headers);
    if (hint) return { ok: false, retryable: true, why: hint.why, ...(hint.retryAfterMs !== undefined ? { retryAfterMs: hint.retryAfterMs } : {}) };
    return { ok: true, body, text };
  }
}
