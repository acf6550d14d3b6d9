// The sampling fields shared by /v1/completions and /v1/chat/completions, checked with zod, and
// their translation to model.generate options. Fields a request leaves out take the model's
// generation_config.json defaults (as vLLM does), except that temperature > 0, top_p, top_k or
// n > 1 ask for sampling. Extensions beyond OpenAI's fields (vLLM's names): top_k,
// repetition_penalty, min_tokens. OpenAI fields this server cannot honour are 400s, never ignored.
import { z } from "zod";
import type { GenerateOptions } from "../generate/options.js";
import type { ModelConfig } from "../models/hf-config.js";
import type { Model } from "../models/model.js";
import { badRequest } from "./api-error.js";

export const samplingFields = {
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: z.number().int().min(1).max(16).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)], { error: "expected a string or a list of at most 4 strings" }).nullish(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string().regex(/^\d+$/, { error: "expected token ids as keys" }), z.number().min(-100).max(100)).nullish(),
  user: z.string().nullish(),
  top_k: z.number().int().min(-1).nullish(),
  repetition_penalty: z.number().positive().nullish(),
  min_tokens: z.number().int().min(0).nullish(),
};

type SamplingRequest = { [K in keyof typeof samplingFields]?: z.infer<(typeof samplingFields)[K]> };

/** Positions the model can attend to (prompt + completion); undefined when it has no such limit (T5). */
export function contextLength(config: ModelConfig): number | undefined {
  switch (config.model_type) {
    case "gpt2": return config.n_positions;
    case "llama": return config.max_position_embeddings ?? 2048;
    case "qwen2": return config.max_position_embeddings ?? 32768;
    default: return undefined;
  }
}

/** Completion length when a request names none and the model has no context limit (T5)... */
const UNBOUNDED_DEFAULT_MAX_TOKENS = 512;
/** ...and the most it may ask for (the KV cache is allocated for the whole length). */
const UNBOUNDED_MAX_TOKENS = 4096;

/** The model's EOS ids as generation resolves them (generation_config.json, else config.json). */
function eosTokenIds(model: Model): number[] {
  const fromConfig = (model.config as { eos_token_id?: number | number[] | null }).eos_token_id;
  const eos = model.folder.generationConfig.eos_token_id ?? fromConfig ?? [];
  return Array.isArray(eos) ? eos : [eos];
}

export interface SamplingPlan {
  options: GenerateOptions;
  n: number;
  stops: string[];
  maxTokens: number;
}

/**
 * Checks the request's sampling fields against the model and the prompts (token ids) and turns
 * them into generate options. `defaultMaxTokens`: OpenAI's default for the endpoint (16 for
 * completions; undefined for chat, meaning "what fits in the context"); `promptParam` names the
 * field holding the prompt in errors.
 */
export function planSampling(
  model: Model, request: SamplingRequest, prompts: number[][], where: { defaultMaxTokens?: number; promptParam: string },
): SamplingPlan {
  const defaultMaxTokens = where.defaultMaxTokens;
  if (request.frequency_penalty) {
    throw badRequest("frequency_penalty is not supported (use repetition_penalty, transformers' multiplicative penalty)", "frequency_penalty", "unsupported_parameter");
  }
  if (request.presence_penalty) {
    throw badRequest("presence_penalty is not supported (use repetition_penalty, transformers' multiplicative penalty)", "presence_penalty", "unsupported_parameter");
  }
  const folder = model.folder.generationConfig;
  const vocab = model.config.vocab_size;
  const n = request.n ?? 1;
  const options: GenerateOptions = {};

  const t = request.temperature ?? undefined;
  const wantsSampling = t !== undefined ? t > 0
    : request.top_p != null || (request.top_k != null && request.top_k > 0) || n > 1 || folder.do_sample;
  if (n > 1 && !wantsSampling) {
    throw badRequest(`n = ${n} needs sampling: with temperature 0 (greedy) every choice would be the same`, "n");
  }
  options.doSample = wantsSampling;
  if (t !== undefined && t > 0) options.temperature = t;
  if (request.top_p != null) options.topP = request.top_p;
  if (request.top_k != null) options.topK = Math.max(0, request.top_k);  // vLLM's -1 = off
  if (request.seed != null) options.seed = request.seed;
  if (request.repetition_penalty != null) options.repetitionPenalty = request.repetition_penalty;
  if (request.min_tokens != null) options.minNewTokens = request.min_tokens;

  if (request.logit_bias) {
    const banned: number[] = [];
    for (const [key, bias] of Object.entries(request.logit_bias)) {
      const id = Number(key);
      if (id >= vocab) throw badRequest(`logit_bias: token ${id} is not in the vocabulary (size ${vocab})`, "logit_bias");
      if (bias !== -100) {
        throw badRequest(`logit_bias: only -100 (never generate the token) is supported, got ${bias} for token ${id}`, "logit_bias", "unsupported_parameter");
      }
      banned.push(id);
    }
    if (banned.length) {
      options.badWordsIds = [...(folder.bad_words_ids ?? []), ...banned.map((id) => [id])];
      // transformers drops EOS ids from bad_words_ids (an EOS is never "bad"), so a banned EOS
      // must stop being an EOS too; padding keeps the id it had.
      const eos = eosTokenIds(model);
      if (banned.some((id) => eos.includes(id))) {
        const kept = eos.filter((id) => !banned.includes(id));
        options.eosTokenId = kept.length ? kept : null;
        const pad = folder.pad_token_id ?? eos[0];
        if (pad !== undefined && pad !== null) options.padTokenId = pad;
      }
    }
  }

  const longest = Math.max(...prompts.map((p) => p.length));
  const limit = model.config.model_type === "t5" ? undefined : contextLength(model.config);
  let maxTokens = request.max_tokens ?? defaultMaxTokens;
  if (maxTokens === undefined) maxTokens = limit !== undefined ? limit - longest : UNBOUNDED_DEFAULT_MAX_TOKENS;
  if (limit !== undefined && longest + maxTokens > limit) {
    const asked = request.max_tokens ?? defaultMaxTokens;
    throw badRequest(
      `this model's context is ${limit} tokens, but the request needs ${longest + (asked ?? 1)} ` +
      `(${longest} in the prompt${asked !== undefined ? `, ${asked} for the completion` : " and at least 1 to generate"}); shorten the prompt or lower max_tokens`,
      asked !== undefined ? "max_tokens" : where.promptParam, "context_length_exceeded");
  }
  if (limit === undefined && maxTokens > UNBOUNDED_MAX_TOKENS) {
    throw badRequest(`max_tokens: at most ${UNBOUNDED_MAX_TOKENS} tokens per request for this model, got ${maxTokens}`, "max_tokens");
  }
  options.maxNewTokens = maxTokens;

  const stops = request.stop == null ? [] : (typeof request.stop === "string" ? [request.stop] : request.stop).filter((s) => s.length > 0);
  return { options, n, stops, maxTokens };
}
