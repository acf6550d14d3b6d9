// Tokenizers from tokenizer.json (+ tokenizer_config.json when present) through
// @huggingface/tokenizers, the same files transformers reads.
import { existsSync } from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { FileFormatError, readJsonFile } from "./json-file.js";

export type { Tokenizer };

export function loadTokenizer(dir: string): Tokenizer {
  const file = path.join(dir, "tokenizer.json");
  if (!existsSync(file)) {
    throw new FileFormatError(file, "file not found (the model folder needs a fast-tokenizer tokenizer.json)");
  }
  const tokenizerJson = readJsonFile(file).value as object;
  const configFile = path.join(dir, "tokenizer_config.json");
  const tokenizerConfig = existsSync(configFile) ? (readJsonFile(configFile).value as object) : {};
  try {
    return new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (e) {
    throw new FileFormatError(file, `is not a tokenizer this version can load (${(e as Error).message})`);
  }
}
