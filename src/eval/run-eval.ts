// `s2s-train eval` as a function: load the model (+ adapter, merged), read the examples, generate
// for every one in batches, score, write predictions.jsonl and metrics.json into the output
// folder, and return the scores with a printable table. The CLI handler only calls this.
import { existsSync } from "node:fs";
import path from "node:path";
import type { ComputeDTypeName, DeviceName } from "../../bindings/native.js";
import { encodePrompt } from "../data/build-example.js";
import { readChatTemplate, renderChat } from "../data/chat-template.js";
import type { GenerateOptions } from "../generate/options.js";
import { parseMetricNames } from "../metrics/compute.js";
import { FileFormatError } from "../models/json-file.js";
import { loadModelForGeneration } from "../generate/load-for-generation.js";
import { inspectModelFolder } from "../models/model-folder.js";
import { setNumThreads } from "../system.js";
import { formatMetricsTable, generationSettings, writeEvalFiles } from "./eval-files.js";
import { evaluateGeneration, type GenerationEvaluation } from "./evaluate-generation.js";
import { readEvalRows, type EvalRow } from "./read-eval-rows.js";

export const DEFAULT_EVAL_METRICS = "bleu,rouge,em,f1";
export const DEFAULT_EVAL_MAX_NEW_TOKENS = 128;

export interface RunEvalOptions {
  /** Hugging Face model folder. */
  model: string;
  /** PEFT LoRA adapter folder trained on `model` (merged into the weights before generating). */
  adapter?: string;
  /** JSON, JSONL or CSV file of examples. */
  data: string;
  /** Metric names or aliases, comma-separated (default bleu,rouge,em,f1). */
  metrics?: string | readonly string[];
  inputField?: string;
  targetField?: string;
  categoryField?: string;
  /** Builds the input from the row's fields, as data.prompt_template does in training. */
  promptTemplate?: string;
  /** Wrap the input with the model's chat template (decoder-only chat models), as data.chat_template does. */
  chatTemplate?: boolean;
  /** With chatTemplate: a system message before each input. */
  systemPrompt?: string;
  /** Prompts per generate call (default 8). */
  batchSize?: number;
  /** Evaluate only the first N examples. */
  maxSamples?: number;
  /**
   * Prompts longer than this many tokens are cut as training cuts them (data.max_input_length),
   * and counted. Default: what the model can take, for GPT-2 n_positions minus the new tokens
   * (it has no position embedding beyond), and maxLength - 1 when maxLength is given.
   */
  maxInputLength?: number;
  /** Generation options; maxNewTokens defaults to 128 (unless maxLength is given), the rest to generation_config.json. */
  generation?: GenerateOptions;
  /** Folder for predictions.jsonl and metrics.json. */
  output: string;
  dtype?: ComputeDTypeName;
  /** Where the model runs (default "auto"). */
  device?: DeviceName;
  /** On a GPU, float32 matmuls on TF32 tensor cores (default false). */
  tf32?: boolean;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface RunEvalResult {
  evaluation: GenerationEvaluation;
  files: { predictions: string; metrics: string };
  table: string;
  /** Prompts cut to maxInputLength (Infinity: no limit applied). */
  truncatedInputs: number;
  maxInputLength: number;
}

export async function runEval(o: RunEvalOptions): Promise<RunEvalResult> {
  // Everything that can be refused is checked before the weights are read.
  const metrics = parseMetricNames(o.metrics ?? DEFAULT_EVAL_METRICS);
  if (metrics.length === 0) throw new Error("--metrics: expected at least one metric name");
  if (o.maxSamples !== undefined && (!Number.isInteger(o.maxSamples) || o.maxSamples < 1)) {
    throw new Error(`--max-samples: expected an integer >= 1, got ${o.maxSamples}`);
  }
  if (o.generation?.addSpecialTokens !== undefined) {
    throw new Error("--add-special-tokens does not apply to eval: prompts get the special tokens training gave them");
  }
  if (o.maxInputLength !== undefined && (!Number.isInteger(o.maxInputLength) || o.maxInputLength < 1)) {
    throw new Error(`--max-input-length: expected an integer >= 1, got ${o.maxInputLength}`);
  }
  const batchSize = o.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`--batch-size: expected an integer >= 1, got ${batchSize}`);
  let rows = readEvalRows(o.data, {
    input: o.inputField ?? "input",
    target: o.targetField ?? "target",
    ...(o.categoryField !== undefined ? { category: o.categoryField } : {}),
    ...(o.promptTemplate !== undefined ? { promptTemplate: o.promptTemplate } : {}),
  });
  if (o.maxSamples !== undefined) rows = rows.slice(0, o.maxSamples);
  if (o.threads !== undefined) setNumThreads(o.threads);
  if (o.adapter !== undefined && !existsSync(path.join(o.adapter, "adapter_config.json"))) {
    throw new FileFormatError(o.adapter, "is not a PEFT adapter folder (adapter_config.json is missing)");
  }

  const chat = o.chatTemplate ? readChatTemplate(o.model) : undefined;
  if (o.chatTemplate && !chat) throw new FileFormatError(path.join(o.model, "tokenizer_config.json"), "--chat-template: the model has no chat_template");
  if (o.systemPrompt !== undefined && !o.chatTemplate) throw new Error("--system-prompt is used with --chat-template only");

  const modelConfig = inspectModelFolder(o.model).config;
  const kind = modelConfig.model_type === "t5" ? "seq2seq" : "causal";
  if (chat && kind === "seq2seq") throw new Error("--chat-template applies to decoder-only chat models; this model is seq2seq");

  const model = await loadModelForGeneration({
    model: o.model, ...(o.adapter !== undefined ? { adapter: o.adapter } : {}), ...(o.dtype ? { dtype: o.dtype } : {}),
    ...(o.device ? { device: o.device } : {}), ...(o.tf32 ? { tf32: true } : {}),
  });
  const tokenizer = model.tokenizer;
  if (!tokenizer) throw new FileFormatError(o.model, "has no tokenizer.json; eval reads and writes text, so it needs one");
  // The prompt as training tokenized it (src/data/build-example.ts): T5 inputs keep the
  // tokenizer's special tokens, decoder-only prompts only the leading ones (Llama's <s>), and a
  // chat template writes its own.
  // transformers' default (20 tokens in all) cuts most answers short; 128 unless a length is given.
  const lengthGiven = o.generation?.maxNewTokens !== undefined || o.generation?.maxLength !== undefined;
  const generation: GenerateOptions = { ...(lengthGiven ? {} : { maxNewTokens: DEFAULT_EVAL_MAX_NEW_TOKENS }), ...o.generation };
  const maxInputLength = o.maxInputLength ?? promptRoom(modelConfig, generation);
  let truncatedInputs = 0;
  const promptIds = (r: EvalRow): number[] => {
    let ids: number[];
    if (chat) {
      const messages = [...(o.systemPrompt !== undefined ? [{ role: "system" as const, content: o.systemPrompt }] : []), { role: "user" as const, content: r.input }];
      ids = tokenizer.encode(renderChat(chat, messages, true, r.source), { add_special_tokens: false }).ids;
      if (ids.length <= maxInputLength) return ids;
      ids = ids.slice(0, maxInputLength);
    } else {
      ids = encodePrompt(tokenizer, kind, r.input);
      if (ids.length <= maxInputLength) return ids;
      ids = encodePrompt(tokenizer, kind, r.input, maxInputLength);
    }
    truncatedInputs++;
    return ids;
  };
  const evaluation = await evaluateGeneration(
    model,
    rows.map((r) => ({
      promptIds: promptIds(r),
      input: r.input,
      reference: r.reference,
      ...(r.category !== undefined ? { category: r.category } : {}),
    })),
    {
      metrics, generation, batchSize,
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    },
  );
  const files = writeEvalFiles(o.output, evaluation, {
    model: path.resolve(o.model),
    ...(o.adapter !== undefined ? { adapter: path.resolve(o.adapter) } : {}),
    data: path.resolve(o.data),
    ...(o.promptTemplate !== undefined ? { prompt_template: o.promptTemplate } : {}),
    ...(o.chatTemplate ? { chat_template: true } : {}),
    ...(o.systemPrompt !== undefined ? { system_prompt: o.systemPrompt } : {}),
    metrics,
    generation: generationSettings(generation),
    ...(Number.isFinite(maxInputLength) ? { max_input_length: maxInputLength } : {}),
    truncated_inputs: truncatedInputs,
  });
  return { evaluation, files, table: formatMetricsTable(evaluation), truncatedInputs, maxInputLength };
}

/**
 * The longest prompt the model can generate from with these options: maxLength - 1 when a total
 * length is given (the prompt must leave room for one token), GPT-2's n_positions minus the new
 * tokens (no position embedding beyond), else no limit (RoPE and relative positions have none).
 */
function promptRoom(config: { model_type: string; n_positions?: number }, generation: GenerateOptions): number {
  if (generation.maxLength !== undefined && generation.maxNewTokens === undefined) return generation.maxLength - 1;
  if (config.model_type === "gpt2" && config.n_positions !== undefined) {
    const room = config.n_positions - (generation.maxNewTokens ?? 0);
    if (room < 1) {
      throw new Error(`max_new_tokens ${generation.maxNewTokens} leaves no room for a prompt in the model's ${config.n_positions} positions (n_positions)`);
    }
    return room;
  }
  return Infinity;
}
