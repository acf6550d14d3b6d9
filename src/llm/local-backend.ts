// The local engine as an LlmBackend: the model in this process, no HTTP. A LocalGenerator turns
// chat messages into text; ModelGenerator is the one over model.generate (the folder's chat
// template when it has one, stop strings, one request at a time on the model).
import { compileJsonSchema, UnsupportedSchemaError } from "../constrain/json-schema.js";
import { loadTokenVocabulary, UnsupportedTokenizerError } from "../constrain/token-vocabulary.js";
import { encodePrompt } from "../data/build-example.js";
import type { TaskKind } from "../data/types.js";
import type { GenerateOptions } from "../generate/options.js";
import { loadModelForGeneration } from "../generate/load-for-generation.js";
import type { Model } from "../models/model.js";
import { Semaphore } from "../util/semaphore.js";
import { readChatTemplate, renderChat, type ChatTemplate } from "../data/chat-template.js";
import type { ChatMessage, CompletionRequest, CompletionResult, JsonSchemaFormat, LlmBackend } from "./types.js";

export interface LocalGenerateOptions {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  /**
   * Constrain the output to this schema: decoding is constrained (see src/constrain) when the
   * schema is in the supported subset and the model's tokenizer is byte-level or
   * SentencePiece-style; otherwise the model writes freely (LocalGeneration.unconstrained says
   * why). The caller validates the text either way.
   */
  jsonSchema?: JsonSchemaFormat;
  signal?: AbortSignal;
}

export interface LocalGeneration {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: "stop" | "length" | null;
  /** Why a jsonSchema asked for could not constrain decoding (undefined when it did, or none was asked). */
  unconstrained?: string;
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

/** Tokens generated when a request does not say (OpenAI's endpoints have no small default either). */
export const LOCAL_DEFAULT_MAX_NEW_TOKENS = 512;

/** The earliest occurrence of any stop string in `text`, or -1. */
function firstStop(text: string, stop: readonly string[]): number {
  let at = -1;
  for (const s of stop) {
    const i = s === "" ? -1 : text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/**
 * Chat messages through a loaded Model: rendered with the folder's chat template and tokenized
 * without adding special tokens (the template writes them, as transformers' apply_chat_template
 * does); without a template the messages' contents, joined by blank lines, are the prompt,
 * tokenized as training tokenizes a prompt (src/data). temperature 0 is greedy search; a positive
 * one samples. jsonSchema constrains decoding where it can (see LocalGenerateOptions.jsonSchema).
 * Requests run one at a time: a model generates one batch at a time.
 */
export class ModelGenerator implements LocalGenerator {
  private readonly queue = new Semaphore(1);
  private readonly kind: TaskKind;

  constructor(readonly model: Model, private readonly chatTemplate: ChatTemplate | undefined = readChatTemplate(model.folder.dir)) {
    this.kind = model.config.model_type === "t5" ? "seq2seq" : "causal";
  }

  /** The prompt's token ids for `messages`. */
  promptIds(messages: readonly ChatMessage[]): number[] {
    const tokenizer = this.model.tokenizer;
    if (!tokenizer) throw new Error(`the local engine needs ${this.model.folder.dir}/tokenizer.json to turn messages into tokens`);
    if (this.chatTemplate) {
      return tokenizer.encode(renderChat(this.chatTemplate, [...messages], true, "the local engine's messages"), { add_special_tokens: false }).ids;
    }
    return encodePrompt(tokenizer, this.kind, messages.map((m) => m.content).join("\n\n"));
  }

  chat(messages: ChatMessage[], options: LocalGenerateOptions): Promise<LocalGeneration> {
    return this.queue.run(() => this.generate(messages, options));
  }

  private async generate(messages: ChatMessage[], o: LocalGenerateOptions): Promise<LocalGeneration> {
    o.signal?.throwIfAborted();
    const prompt = this.promptIds(messages);
    const stop = o.stop ?? [];
    // A stop string ends generation as soon as the streamed text contains it.
    const stopped = new AbortController();
    let streamed = "";
    const options: GenerateOptions = {
      maxNewTokens: o.maxNewTokens ?? LOCAL_DEFAULT_MAX_NEW_TOKENS,
      signal: o.signal ? AbortSignal.any([o.signal, stopped.signal]) : stopped.signal,
    };
    if (o.temperature !== undefined) {
      options.doSample = o.temperature > 0;
      if (o.temperature > 0) options.temperature = o.temperature;
    }
    if (o.topP !== undefined) options.topP = o.topP;
    const unconstrained = o.jsonSchema ? this.constraintProblem(o.jsonSchema.schema) : undefined;
    if (o.jsonSchema && unconstrained === undefined) options.jsonSchema = o.jsonSchema.schema;
    if (o.seed !== undefined) options.seed = o.seed;
    if (stop.length > 0) {
      options.onToken = (event) => {
        streamed += event.text;
        if (firstStop(streamed, stop) >= 0) stopped.abort();
      };
    }
    const result = await this.model.generate([prompt], options);
    o.signal?.throwIfAborted();
    const sequence = result.sequences[0]!;
    let text = sequence.text ?? "";
    const at = firstStop(text, stop);
    if (at >= 0) text = text.slice(0, at);
    return {
      text,
      promptTokens: result.usage.promptTokens,
      completionTokens: result.usage.completionTokens,
      finishReason: at >= 0 || sequence.finishReason === "eos" ? "stop" : sequence.finishReason === "length" ? "length" : null,
      ...(unconstrained !== undefined ? { unconstrained } : {}),
    };
  }

  /** Why `schema` cannot constrain this model's decoding, or undefined when it can. */
  private constraintProblem(schema: Record<string, unknown>): string | undefined {
    try {
      compileJsonSchema(schema);
      loadTokenVocabulary(this.model.folder.dir);
      return undefined;
    } catch (e) {
      if (e instanceof UnsupportedSchemaError || e instanceof UnsupportedTokenizerError) return e.message;
      throw e;
    }
  }
}

/** The local engine for a model folder, with a PEFT adapter merged in when given. */
export async function loadLocalBackend(modelDir: string, adapterDir?: string): Promise<LlmBackend> {
  const model = await loadModelForGeneration({ model: modelDir, ...(adapterDir !== undefined ? { adapter: adapterDir } : {}) });
  return new LocalModelBackend(new ModelGenerator(model), adapterDir ? `local (${modelDir} + ${adapterDir})` : `local (${modelDir})`);
}
