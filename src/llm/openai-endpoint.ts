// One OpenAI-compatible chat-completions endpoint (llama.cpp's server, vLLM, Ollama,
// `s2s-train serve`, OpenAI itself) through plain fetch. One call is one attempt: retries and
// failover belong to EndpointPool.
import { LlmError, type CompletionRequest, type CompletionResult, type LlmBackend } from "./types.js";
import { parseRetryAfter } from "../util/sleep.js";

/**
 * How to ask for JSON: "json_schema" sends response_format {type: "json_schema"} (llama.cpp,
 * vLLM, Ollama ≥ 0.5, OpenAI); "json_object" sends {type: "json_object", schema} (older
 * llama.cpp); "none" sends nothing; "auto" starts with json_schema and drops to none for good if
 * the server answers 400 about response_format. Output is validated in every case.
 */
export type StructuredOutputMode = "auto" | "json_schema" | "json_object" | "none";

export interface OpenAiEndpointOptions {
  /** Base URL including the version prefix, e.g. http://127.0.0.1:8080/v1 */
  url: string;
  model: string;
  apiKey?: string;
  timeoutMs: number;
  structuredOutput?: StructuredOutputMode;
  name?: string;
}

const retryableStatus = new Set([408, 409, 425, 429, 500, 502, 503, 504]);

export class OpenAiEndpoint implements LlmBackend {
  readonly name: string;
  private structuredOutput: StructuredOutputMode;
  private readonly chatUrl: string;

  constructor(private readonly options: OpenAiEndpointOptions) {
    this.name = options.name ?? options.url;
    this.structuredOutput = options.structuredOutput ?? "auto";
    this.chatUrl = options.url.replace(/\/+$/, "") + "/chat/completions";
  }

  /** The structured-output mode in force (after any "auto" fallback). */
  get structuredOutputMode(): StructuredOutputMode {
    return this.structuredOutput;
  }

  async complete(request: CompletionRequest): Promise<CompletionResult> {
    // The mode this request is sent with: requests in flight together may see a 400 each before
    // the first of them has switched the endpoint to "none", and every one of them must fall back.
    const mode = this.structuredOutput;
    try {
      return await this.send(request, mode);
    } catch (e) {
      // A server without response_format support (or, like `s2s-train serve`, one that checks the
      // output but cannot constrain decoding) says so with a 400; ask again without it.
      if (e instanceof LlmError && e.details.status === 400 && request.jsonSchema && mode === "auto" &&
          /response_format|json_schema|grammar|schema/i.test(e.message)) {
        this.structuredOutput = "none";
        return await this.send(request, "none");
      }
      throw e;
    }
  }

  private body(request: CompletionRequest, mode: StructuredOutputMode): Record<string, unknown> {
    const body: Record<string, unknown> = { model: this.options.model, messages: request.messages };
    if (request.maxTokens !== undefined) body.max_tokens = request.maxTokens;
    if (request.temperature !== undefined) body.temperature = request.temperature;
    if (request.topP !== undefined) body.top_p = request.topP;
    if (request.seed !== undefined) body.seed = request.seed;
    if (request.stop?.length) body.stop = request.stop;
    if (request.jsonSchema && mode !== "none") {
      body.response_format = mode === "json_object"
        ? { type: "json_object", schema: request.jsonSchema.schema }
        : { type: "json_schema", json_schema: { name: request.jsonSchema.name, schema: request.jsonSchema.schema } };
    }
    return body;
  }

  private async send(request: CompletionRequest, mode: StructuredOutputMode): Promise<CompletionResult> {
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const signal = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.chatUrl, { method: "POST", headers, body: JSON.stringify(this.body(request, mode)), signal });
      text = await response.text();
    } catch (e) {
      if (request.signal?.aborted) throw request.signal.reason;
      if (timeout.aborted) {
        throw new LlmError(`${this.name}: no answer within ${this.options.timeoutMs} ms`, true, { backend: this.name });
      }
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new LlmError(`${this.name}: cannot reach the server (${cause?.code ?? cause?.message ?? (e as Error).message})`, true,
        { backend: this.name });
    }
    if (!response.ok) {
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
      throw new LlmError(`${this.name}: HTTP ${response.status}: ${errorText(text)}`, retryableStatus.has(response.status),
        { backend: this.name, status: response.status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
    }
    return this.parse(text);
  }

  private parse(text: string): CompletionResult {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new LlmError(`${this.name}: the response body is not JSON: ${text.slice(0, 200)}`, true, { backend: this.name });
    }
    const choice = (json as { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[] }).choices?.[0];
    const content = choice?.message?.content;
    if (typeof content !== "string") {
      throw new LlmError(`${this.name}: expected choices[0].message.content to be a string in the response, got ${text.slice(0, 200)}`,
        true, { backend: this.name });
    }
    const usage = (json as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } }).usage;
    return {
      text: content,
      finishReason: typeof choice?.finish_reason === "string" ? choice.finish_reason : null,
      usage: {
        promptTokens: typeof usage?.prompt_tokens === "number" ? usage.prompt_tokens : 0,
        completionTokens: typeof usage?.completion_tokens === "number" ? usage.completion_tokens : 0,
      },
      backend: this.name,
    };
  }
}

/** The message of an OpenAI-style error body ({error: {message}}), else the start of the text. */
function errorText(text: string): string {
  try {
    const json = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof json.error === "string") return json.error;
    if (typeof json.error?.message === "string") return json.error.message;
    if (typeof json.message === "string") return json.message;
  } catch {
    // not JSON: fall through
  }
  return text.slice(0, 300) || "(empty body)";
}
