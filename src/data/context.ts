// What data preparation needs from a model folder, read without loading any weights:
// the tokenizer, the task kind, eos and pad ids, and the chat template.
import path from "node:path";
import { readGenerationConfig } from "../models/generation-config.js";
import { readModelConfig } from "../models/hf-config.js";
import { FileFormatError } from "../models/json-file.js";
import { loadTokenizer } from "../models/tokenizer.js";
import { readChatTemplate } from "./chat-template.js";
import type { DataContext } from "./load-data.js";

export interface ModelDataContext extends DataContext {
  /** The pad id collate uses: config's pad_token_id, else eos (decoder-only models often have none). */
  padTokenId: number;
  /** The longest input the model takes (GPT-2's n_positions), where it has a bound. */
  maxPositions?: number;
}

function firstId(v: number | number[] | null | undefined): number | undefined {
  return Array.isArray(v) ? v[0] : v ?? undefined;
}

/** `modelDir` needs config.json and tokenizer.json (weights are not read). */
export function dataContextForModel(modelDir: string, baseDir: string): ModelDataContext {
  const configFile = path.join(modelDir, "config.json");
  const { config } = readModelConfig(configFile);
  const generation = readGenerationConfig(path.join(modelDir, "generation_config.json"));
  const tokenizer = loadTokenizer(modelDir);
  const eosTokenId = firstId(config.eos_token_id) ?? firstId(generation.eos_token_id);
  if (eosTokenId === undefined) {
    throw new FileFormatError(configFile, "eos_token_id: expected a token id (every target ends with eos), got none in config.json or generation_config.json");
  }
  const configPad = (config as { pad_token_id?: number | null }).pad_token_id;
  const pad = configPad ?? generation.pad_token_id ?? eosTokenId;
  const chatTemplate = readChatTemplate(modelDir);
  const maxPositions = (config as { n_positions?: number }).n_positions;
  return {
    tokenizer,
    kind: config.model_type === "t5" ? "seq2seq" : "causal",
    baseDir,
    eosTokenId,
    padTokenId: pad,
    ...(maxPositions !== undefined ? { maxPositions } : {}),
    ...(chatTemplate ? { chatTemplate } : {}),
  };
}
