// JSON over HTTP for the remote trackers: one POST/GET with a timeout, a few retries on network
// errors and 5xx answers, and errors that name the service, the URL and what came back.

export interface JsonRequest {
  /** For messages: "MLflow", "W&B". */
  service: string;
  method: "GET" | "POST";
  url: string;
  headers?: Record<string, string>;
  body?: unknown;
  timeoutMs?: number;
  retries?: number;
}

export class HttpJsonError extends Error {
  readonly code = "S2S_TRACKER";
  constructor(message: string, readonly status: number, readonly responseBody: string) {
    super(message);
    this.name = "HttpJsonError";
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The parsed JSON answer ({} for an empty body). Throws HttpJsonError. */
export async function requestJson(req: JsonRequest): Promise<unknown> {
  const retries = req.retries ?? 2;
  for (let attempt = 0; ; attempt++) {
    let status = 0;
    let text = "";
    try {
      const response = await fetch(req.url, {
        method: req.method,
        headers: { ...(req.body === undefined ? {} : { "content-type": "application/json" }), ...req.headers },
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        signal: AbortSignal.timeout(req.timeoutMs ?? 30_000),
      });
      status = response.status;
      text = await response.text();
      if (response.ok) {
        try {
          return text.length > 0 ? JSON.parse(text) : {};
        } catch {
          throw new HttpJsonError(`${req.service}: ${req.method} ${req.url} answered with something other than JSON: ${text.slice(0, 200)}`, status, text);
        }
      }
      if (status < 500 || attempt >= retries) {
        throw new HttpJsonError(`${req.service}: ${req.method} ${req.url} failed with HTTP ${status}: ${text.slice(0, 500)}`, status, text);
      }
    } catch (e) {
      if (e instanceof HttpJsonError) throw e;
      if (attempt >= retries) {
        // fetch's own message is "fetch failed"; the cause says why (ECONNREFUSED, a timeout...).
        const cause = ((e as Error).cause as Error | undefined)?.message;
        const why = cause ? `${(e as Error).message} (${cause})` : (e as Error).message;
        throw new HttpJsonError(`${req.service}: ${req.method} ${req.url} failed: ${why}`, status, text);
      }
    }
    await sleep(200 * 2 ** attempt);
  }
}
