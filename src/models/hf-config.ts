// Hugging Face config.json for the architectures the engine runs, as zod schemas: the single
// place that says which model_types and field values are supported. Unknown fields pass through
// untouched (HF configs carry many), but every field the engine uses is checked here first, so a
// user sees "config.json: n_head: ..." rather than a native error.
import { z } from "zod";
import { FileFormatError, readJsonFile, validate } from "./json-file.js";

const positive = z.number().int().positive();
const tokenId = z.number().int().nonnegative();
const tokenIds = z.union([tokenId, z.array(tokenId)]);
const eps = z.number().positive().max(1);

const gpt2 = z.looseObject({
  model_type: z.literal("gpt2"),
  vocab_size: positive,
  n_embd: positive,
  n_layer: positive,
  n_head: positive,
  n_positions: positive,
  n_inner: positive.nullish(),
  layer_norm_epsilon: eps.default(1e-5),
  activation_function: z
    .enum(["gelu_new", "gelu_pytorch_tanh", "gelu"], {
      error: "expected gelu_new, gelu_pytorch_tanh or gelu (the activations GPT-2 checkpoints use)",
    })
    .default("gelu_new"),
  tie_word_embeddings: z.boolean().default(true),
  bos_token_id: tokenId.nullish(),
  eos_token_id: tokenIds.nullish(),
});

const ropeScaling = z.null({ error: "rope_scaling is not supported yet (only plain RoPE); remove it or use a model without it" }).optional();

const llamaLike = {
  vocab_size: positive,
  hidden_size: positive,
  intermediate_size: positive,
  num_hidden_layers: positive,
  num_attention_heads: positive,
  num_key_value_heads: positive.nullish(),
  head_dim: positive.nullish(),
  max_position_embeddings: positive.optional(),
  rms_norm_eps: eps.default(1e-6),
  rope_theta: z.number().positive().default(10000),
  rope_scaling: ropeScaling,
  hidden_act: z.literal("silu", { error: "expected hidden_act 'silu' (SwiGLU MLP)" }).default("silu"),
  bos_token_id: tokenId.nullish(),
  eos_token_id: tokenIds.nullish(),
  pad_token_id: tokenId.nullish(),
};

const llama = z.looseObject({
  model_type: z.literal("llama"),
  ...llamaLike,
  attention_bias: z.boolean().default(false),
  mlp_bias: z.literal(false, { error: "mlp_bias is not supported yet" }).optional(),
  tie_word_embeddings: z.boolean().default(false),
});

const qwen2 = z.looseObject({
  model_type: z.literal("qwen2"),
  ...llamaLike,
  tie_word_embeddings: z.boolean().default(false),
  use_sliding_window: z.literal(false, { error: "sliding-window attention is not supported yet" }).optional(),
});

const t5 = z.looseObject({
  model_type: z.literal("t5"),
  vocab_size: positive,
  d_model: positive,
  d_kv: positive,
  d_ff: positive,
  num_layers: positive,
  num_decoder_layers: positive.nullish(),
  num_heads: positive,
  relative_attention_num_buckets: positive.default(32),
  relative_attention_max_distance: positive.default(128),
  layer_norm_epsilon: eps.default(1e-6),
  feed_forward_proj: z
    .enum(["relu", "gated-gelu"], { error: "expected feed_forward_proj 'relu' (T5 v1.0) or 'gated-gelu' (T5 v1.1, flan-t5)" })
    .default("relu"),
  tie_word_embeddings: z.boolean().default(true),
  decoder_start_token_id: tokenId.default(0),
  pad_token_id: tokenId.default(0),
  eos_token_id: tokenIds.default(1),
});

export const SUPPORTED_MODEL_TYPES = ["gpt2", "llama", "qwen2", "t5"] as const;

export const modelConfigSchema = z
  .discriminatedUnion("model_type", [gpt2, llama, qwen2, t5], {
    error: (issue) =>
      issue.code === "invalid_union"
        ? `model_type ${JSON.stringify((issue.input as { model_type?: unknown })?.model_type)} is not supported; supported: ${SUPPORTED_MODEL_TYPES.join(", ")}`
        : undefined,
  })
  .superRefine((c, ctx) => {
    const [hidden, heads, field] =
      c.model_type === "gpt2" ? [c.n_embd, c.n_head, "n_head"]
      : c.model_type === "t5" ? [c.num_heads * c.d_kv, c.num_heads, "num_heads"]
      : [c.hidden_size, c.num_attention_heads, "num_attention_heads"];
    if (c.model_type !== "t5" && !("head_dim" in c && c.head_dim) && hidden % heads !== 0) {
      ctx.addIssue({ code: "custom", path: [field], message: `expected a divisor of the hidden size ${hidden}, got ${heads}` });
    }
    if ((c.model_type === "llama" || c.model_type === "qwen2") && c.num_key_value_heads &&
        c.num_attention_heads % c.num_key_value_heads !== 0) {
      ctx.addIssue({
        code: "custom", path: ["num_key_value_heads"],
        message: `expected a divisor of num_attention_heads ${c.num_attention_heads}, got ${c.num_key_value_heads}`,
      });
    }
  });

export type ModelConfig = z.infer<typeof modelConfigSchema>;

/** Reads and validates `<dir>/config.json`; returns the parsed config and the exact text. */
export function readModelConfig(file: string): { config: ModelConfig; text: string } {
  const { text, value } = readJsonFile(file);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FileFormatError(file, "expected a JSON object");
  }
  return { config: validate(modelConfigSchema, value, file), text };
}
