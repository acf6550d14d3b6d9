// Shared by the data tests: temporary folders, files, and a small tokenizer built in place.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { buildWordPieceTokenizer, dataConfigSchema, type BuildTokenizerOptions, type DataConfig } from "../src/index.js";

export const fixtures = path.resolve(import.meta.dirname, "fixtures/models");

export { tempDir } from "./train-helpers.js";

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
}

/** The data: section with defaults, as the trainer passes it. */
export function dataConfig(fields: Partial<Record<keyof DataConfig, unknown>>): DataConfig {
  return dataConfigSchema.parse(fields);
}

/**
 * A model folder without weights (dataContextForModel reads config.json and the tokenizer only):
 * a WordPiece tokenizer over `corpus`, and a config of the given family.
 */
export function modelFolderWithTokenizer(
  dir: string, modelType: "t5" | "llama", corpus: string[], options: BuildTokenizerOptions = {},
): string {
  const built = buildWordPieceTokenizer(corpus, options);
  const config = modelType === "t5"
    ? { model_type: "t5", vocab_size: built.vocabSize, d_model: 8, d_kv: 4, d_ff: 16, num_layers: 1, num_heads: 2, pad_token_id: 0, eos_token_id: 1, decoder_start_token_id: 0 }
    : { model_type: "llama", vocab_size: built.vocabSize, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, eos_token_id: 1, pad_token_id: 0 };
  writeFiles(dir, {
    "config.json": JSON.stringify(config),
    "tokenizer.json": JSON.stringify(built.tokenizer),
    "tokenizer_config.json": JSON.stringify(built.tokenizerConfig),
  });
  return dir;
}
