// generation_config.json: the model's own generation defaults, merged over transformers'
// GenerationConfig defaults. Generation (a later issue) overrides these per call.
import { existsSync } from "node:fs";
import { z } from "zod";
import { readJsonFile, validate } from "./json-file.js";

const tokenId = z.number().int().nonnegative();

export const generationConfigSchema = z.looseObject({
  max_length: z.number().int().positive().default(20),
  max_new_tokens: z.number().int().positive().nullish(),
  min_length: z.number().int().nonnegative().default(0),
  min_new_tokens: z.number().int().nonnegative().nullish(),
  do_sample: z.boolean().default(false),
  temperature: z.number().positive().default(1.0),
  top_k: z.number().int().nonnegative().default(50),
  top_p: z.number().gt(0).max(1).default(1.0),
  num_beams: z.number().int().positive().default(1),
  num_return_sequences: z.number().int().positive().default(1),
  length_penalty: z.number().default(1.0),
  early_stopping: z.union([z.boolean(), z.literal("never")]).default(false),
  repetition_penalty: z.number().positive().default(1.0),
  no_repeat_ngram_size: z.number().int().nonnegative().default(0),
  bad_words_ids: z.array(z.array(tokenId)).nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
  pad_token_id: tokenId.nullish(),
  decoder_start_token_id: tokenId.nullish(),
});

export type GenerationConfig = z.infer<typeof generationConfigSchema>;

/** The folder's generation_config.json over transformers' defaults (defaults alone if absent). */
export function readGenerationConfig(file: string): GenerationConfig {
  if (!existsSync(file)) return generationConfigSchema.parse({});
  return validate(generationConfigSchema, readJsonFile(file).value, file);
}
