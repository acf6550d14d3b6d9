// The one interface every LLM backend implements: an OpenAI-compatible HTTP endpoint, a pool of
// them, or the local engine (the model in this process, no HTTP). Pipelines only see LlmBackend.

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** A JSON schema the output must follow (sent as response_format where the server supports it). */
export interface JsonSchemaFormat {
  name: string;
  schema: Record<string, unknown>;
}

export interface CompletionRequest {
  messages: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  jsonSchema?: JsonSchemaFormat;
  signal?: AbortSignal;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface CompletionResult {
  text: string;
  /** "stop", "length", … as the server said; null when it said nothing. */
  finishReason: string | null;
  usage: TokenUsage;
  /** Which backend answered (an endpoint's name), for logs and per-endpoint statistics. */
  backend: string;
}

export interface LlmBackend {
  readonly name: string;
  complete(request: CompletionRequest): Promise<CompletionResult>;
}

/**
 * A failed completion. `retryable` is true for what another try (or another endpoint) may fix:
 * unreachable server, timeout, 408/409/429/5xx, a malformed response body.
 */
export class LlmError extends Error {
  readonly code = "S2S_LLM";
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly details: { backend?: string; status?: number; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = "LlmError";
  }
}

export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  return { promptTokens: a.promptTokens + b.promptTokens, completionTokens: a.completionTokens + b.completionTokens };
}

export const noUsage: TokenUsage = { promptTokens: 0, completionTokens: 0 };
