// A model folder to generate with, optionally with a PEFT LoRA adapter merged into its weights
// (merged once at load, so each decoding step runs plain linears). Used by eval and the local
// LLM engine.
import { existsSync } from "node:fs";
import path from "node:path";
import type { ComputeDTypeName } from "../../bindings/native.js";
import { FileFormatError } from "./json-file.js";
import { Model } from "./model.js";

export async function loadModelWithAdapter(modelDir: string, adapterDir?: string, dtype: ComputeDTypeName = "float32"): Promise<Model> {
  if (adapterDir !== undefined && !existsSync(path.join(adapterDir, "adapter_config.json"))) {
    throw new FileFormatError(adapterDir, "is not a PEFT adapter folder (adapter_config.json is missing)");
  }
  const model = await Model.load(modelDir, { computeDtype: dtype });
  if (adapterDir !== undefined) {
    await model.loadAdapter(adapterDir);
    await model.mergeLora();
  }
  return model;
}
