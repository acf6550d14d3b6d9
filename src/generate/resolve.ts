// Turns a call's options and the model folder's defaults into the settings native generate runs
// with (bindings' NativeGenerationConfig): options checked with zod (errors name the option),
// then each field from the call, else generation_config.json, else config.json (special tokens,
// as transformers' GenerationConfig.from_model_config), else transformers' defaults.
import { randomInt } from "node:crypto";
import type { NativeGenerationConfig } from "../../bindings/native.js";
import type { GenerationConfig } from "../models/generation-config.js";
import type { ModelConfig } from "../models/hf-config.js";
import { generateOptionsSchema, type GenerateOptions } from "./options.js";

/** A bad option: the message names it and says what was expected. */
export class GenerateOptionsError extends Error {
  readonly code = "S2S_ARGUMENT";
  constructor(message: string) {
    super(message);
    this.name = "GenerateOptionsError";
  }
}

export type CheckedOptions = ReturnType<typeof generateOptionsSchema.parse>;

/** Validates the options (onToken aside, which must be a function when given). */
export function checkGenerateOptions(options: GenerateOptions): CheckedOptions {
  const { onToken, ...rest } = options;
  if (onToken !== undefined && typeof onToken !== "function") {
    throw new GenerateOptionsError("generate options: onToken: expected a function");
  }
  const result = generateOptionsSchema.safeParse(rest);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.length ? issue.path.join(".") : "(options)";
    return `  ${field}: ${issue.message}`;
  });
  throw new GenerateOptionsError(`generate options invalid:\n${problems.join("\n")}`);
}

function tokenField(config: ModelConfig, key: string): number | number[] | undefined {
  const v = (config as Record<string, unknown>)[key];
  return typeof v === "number" || Array.isArray(v) ? (v as number | number[]) : undefined;
}

function single(v: number | number[] | null | undefined): number | undefined {
  if (v === null || v === undefined) return undefined;
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The settings of one call. Length, as transformers resolves it, except that an explicit
 * maxLength in the call beats a max_new_tokens from generation_config.json (transformers lets the
 * file's max_new_tokens win and warns).
 */
export function resolveGenerationConfig(
  options: CheckedOptions,
  folder: GenerationConfig,
  model: ModelConfig,
): NativeGenerationConfig {
  const c: NativeGenerationConfig = {};
  if (options.maxNewTokens !== undefined) {
    c.maxNewTokens = options.maxNewTokens;
  } else if (options.maxLength !== undefined) {
    c.maxLength = options.maxLength;
  } else if (folder.max_new_tokens !== undefined && folder.max_new_tokens !== null) {
    c.maxNewTokens = folder.max_new_tokens;
  } else if (folder.max_length !== 20) {
    c.maxLength = folder.max_length;
  } else {
    c.defaultLength = true;  // transformers: 20 new tokens, capped at max_position_embeddings
  }
  const minNew = options.minNewTokens ?? folder.min_new_tokens;
  if (minNew !== undefined && minNew !== null) c.minNewTokens = minNew;
  c.minLength = options.minLength ?? folder.min_length;

  c.doSample = options.doSample ?? folder.do_sample;
  c.temperature = options.temperature ?? folder.temperature;
  if (c.temperature === 0) {
    // transformers' _prepare_generation_config: temperature 0 turns sampling off.
    c.doSample = false;
    c.temperature = 1;
  }
  c.topK = options.topK ?? folder.top_k;
  c.topP = options.topP ?? folder.top_p;
  c.seed = options.seed ?? randomInt(2 ** 47);
  c.numBeams = options.numBeams ?? folder.num_beams;
  c.numReturnSequences = options.numReturnSequences ?? folder.num_return_sequences;
  c.lengthPenalty = options.lengthPenalty ?? folder.length_penalty;
  c.earlyStopping = options.earlyStopping ?? folder.early_stopping;
  c.repetitionPenalty = options.repetitionPenalty ?? folder.repetition_penalty;
  c.noRepeatNgramSize = options.noRepeatNgramSize ?? folder.no_repeat_ngram_size;
  const bad = options.badWordsIds ?? folder.bad_words_ids;
  if (bad) c.badWordsIds = bad;

  const eos = options.eosTokenId !== undefined
    ? options.eosTokenId
    : (folder.eos_token_id ?? tokenField(model, "eos_token_id") ?? null);
  c.eosTokenIds = eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  const pad = options.padTokenId ?? folder.pad_token_id ?? single(tokenField(model, "pad_token_id"));
  if (pad !== undefined && pad !== null) c.padTokenId = pad;
  const bos = folder.bos_token_id ?? single(tokenField(model, "bos_token_id"));
  if (bos !== undefined && bos !== null) c.bosTokenId = bos;
  const start = options.decoderStartTokenId ?? folder.decoder_start_token_id ??
    single(tokenField(model, "decoder_start_token_id"));
  if (start !== undefined && start !== null) c.decoderStartTokenId = start;
  return c;
}
