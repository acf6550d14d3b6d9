// A Hugging Face model folder: which files hold the config, the weights (one file or shards
// listed by model.safetensors.index.json), the tokenizer and the generation defaults. Problems
// are errors naming the file.
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { INDEX_FILE, SafetensorsIndexSchema, SINGLE_FILE } from "../io/safetensors.js";
import { readGenerationConfig, type GenerationConfig } from "./generation-config.js";
import { readModelConfig, type ModelConfig } from "./hf-config.js";
import { FileFormatError, readJsonFile, validate } from "./json-file.js";

export interface ModelFolder {
  dir: string;
  config: ModelConfig;
  /** config.json exactly as on disk (the native core parses the same text). */
  configText: string;
  /** The safetensors files holding the weights, in shard order. */
  weightFiles: string[];
  /** For sharded checkpoints: tensor name -> shard file. */
  weightMap?: Record<string, string>;
  generationConfig: GenerationConfig;
  tokenizerFile?: string;
}

export function inspectModelFolder(dir: string): ModelFolder {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new FileFormatError(dir, "is not a folder (expected a Hugging Face model folder with config.json)");
  }
  const { config, text } = readModelConfig(path.join(dir, "config.json"));
  const single = path.join(dir, SINGLE_FILE);
  const indexFile = path.join(dir, INDEX_FILE);
  let weightFiles: string[];
  let weightMap: Record<string, string> | undefined;
  if (existsSync(single)) {
    weightFiles = [single];
  } else if (existsSync(indexFile)) {
    const index = validate(SafetensorsIndexSchema, readJsonFile(indexFile).value, indexFile);
    weightMap = {};
    const shards: string[] = [];
    for (const [tensor, shard] of Object.entries(index.weight_map)) {
      const shardPath = path.join(dir, shard);
      if (!shards.includes(shardPath)) {
        if (!existsSync(shardPath)) {
          throw new FileFormatError(indexFile, `weight_map.${tensor}: shard ${shard} is missing from ${dir}`);
        }
        shards.push(shardPath);
      }
      weightMap[tensor] = shardPath;
    }
    weightFiles = shards.sort();
  } else if (existsSync(path.join(dir, "pytorch_model.bin"))) {
    throw new FileFormatError(dir, "has only pytorch_model.bin; convert the weights to model.safetensors (safetensors is the only weight format read)");
  } else {
    throw new FileFormatError(dir, "has no model.safetensors or model.safetensors.index.json");
  }
  const tokenizerFile = path.join(dir, "tokenizer.json");
  return {
    dir,
    config,
    configText: text,
    weightFiles,
    ...(weightMap ? { weightMap } : {}),
    generationConfig: readGenerationConfig(path.join(dir, "generation_config.json")),
    ...(existsSync(tokenizerFile) ? { tokenizerFile } : {}),
  };
}
