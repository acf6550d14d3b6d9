// A model folder trained from nothing: a "template" folder holding config.json and the tokenizer
// (tokenizer.json, tokenizer_config.json, generation_config.json — no weights) becomes a complete
// Hugging Face folder whose weights are freshly initialised (Model.create) with a seed.
import { copyFileSync, existsSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { readModelConfig } from "./hf-config.js";
import { FileFormatError, readJsonFile } from "./json-file.js";
import { Model } from "./model.js";

/** Copied from the template when present (config.json is written by the model itself). */
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

export interface CreateModelFolderOptions {
  /** Seed of the random initialisation (default 0). */
  seed?: number;
}

/**
 * Writes `outDir` (which must not exist yet) as config.json + model.safetensors + the template's
 * tokenizer and generation files. The folder appears whole or not at all: it is filled under a
 * temporary name and renamed.
 */
export async function createModelFolder(templateDir: string, outDir: string, options: CreateModelFolderOptions = {}): Promise<void> {
  const configFile = path.join(templateDir, "config.json");
  readModelConfig(configFile);  // errors name the file and field
  if (!existsSync(path.join(templateDir, "tokenizer.json"))) {
    throw new FileFormatError(path.join(templateDir, "tokenizer.json"), "file not found (a model trained from scratch still needs its tokenizer)");
  }
  if (existsSync(outDir)) throw new FileFormatError(outDir, "already exists; choose a new folder for the initialised model");
  const model = await Model.create(readJsonFile(configFile).value as Record<string, unknown>, { seed: options.seed ?? 0 });
  const temp = `${outDir}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await model.save(temp);
    for (const name of TOKENIZER_FILES) {
      const from = path.join(templateDir, name);
      if (existsSync(from)) copyFileSync(from, path.join(temp, name));
    }
    renameSync(temp, outDir);
  } catch (e) {
    rmSync(temp, { recursive: true, force: true });
    throw e;
  }
}
