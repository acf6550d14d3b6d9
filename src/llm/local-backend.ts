// The local engine as an LlmBackend: the model in this process, no HTTP. What it needs from
// generation (issue 4) is the LocalGenerator below; until model.generate lands,
// loadLocalBackend() says so and the pipelines use OpenAI-compatible endpoints (for example
// `s2s-train serve` once it exists, or llama.cpp's server).
import { LlmError, type ChatMessage, type CompletionRequest, type CompletionResult, type JsonSchemaFormat, type LlmBackend } from "./types.js";

export interface LocalGenerateOptions {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  /** Constrain the output to this schema where the engine can; it is validated afterwards anyway. */
  jsonSchema?: JsonSchemaFormat;
  signal?: AbortSignal;
}

export interface LocalGeneration {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: "stop" | "length" | null;
}

/** Chat messages in, text out: the model's chat template applied (plain text for models without one). */
export interface LocalGenerator {
  chat(messages: ChatMessage[], options: LocalGenerateOptions): Promise<LocalGeneration>;
}

export class LocalModelBackend implements LlmBackend {
  constructor(private readonly generator: LocalGenerator, readonly name = "local") {}

  async complete(request: CompletionRequest): Promise<CompletionResult> {
    const options: LocalGenerateOptions = {};
    if (request.maxTokens !== undefined) options.maxNewTokens = request.maxTokens;
    if (request.temperature !== undefined) options.temperature = request.temperature;
    if (request.topP !== undefined) options.topP = request.topP;
    if (request.seed !== undefined) options.seed = request.seed;
    if (request.stop) options.stop = request.stop;
    if (request.jsonSchema) options.jsonSchema = request.jsonSchema;
    if (request.signal) options.signal = request.signal;
    const g = await this.generator.chat(request.messages, options);
    return {
      text: g.text,
      finishReason: g.finishReason,
      usage: { promptTokens: g.promptTokens, completionTokens: g.completionTokens },
      backend: this.name,
    };
  }
}

/**
 * The local engine for a model folder (+ adapter). Waits for generation (model.generate, issue 4):
 * the lead wires it to a LocalGenerator over Model at merge time.
 */
export async function loadLocalBackend(modelDir: string, adapterDir?: string): Promise<LlmBackend> {
  throw new LlmError(
    `the local engine (llm.local, model ${modelDir}${adapterDir ? ` + adapter ${adapterDir}` : ""}) needs native generation, ` +
    "which this build does not have yet; serve the model with an OpenAI-compatible server and list it under llm.endpoints",
    false,
  );
}
