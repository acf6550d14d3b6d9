// The model `generate` and `serve` run: a Hugging Face folder, optionally with a PEFT LoRA adapter
// merged into its weights (merged once at load, so each decoding step runs plain linears).
import { existsSync } from "node:fs";
import path from "node:path";
import type { ComputeDTypeName, DeviceName } from "../../bindings/native.js";
import { Model } from "../models/model.js";
import { FileFormatError } from "../models/json-file.js";
import { setNumThreads } from "../system.js";

export interface GenerationModelOptions {
  /** The base model folder. */
  model: string;
  /** A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) trained on `model`. */
  adapter?: string;
  /** The linear layers' matmul dtype (default float32). */
  dtype?: ComputeDTypeName;
  /** Threads of the native pool (default: the pool's own choice). */
  threads?: number;
  /**
   * Where the model runs (default "auto": CUDA when the addon has the CUDA backend and a GPU is
   * usable, else the CPU). On a GPU the model decodes there (KV cache and forward).
   */
  device?: DeviceName;
  /** On a GPU, float32 matmuls on TF32 tensor cores (default false); see LoadModelOptions.tf32. */
  tf32?: boolean;
}

export async function loadModelForGeneration(options: GenerationModelOptions): Promise<Model> {
  if (options.threads !== undefined) setNumThreads(options.threads);
  const model = await Model.load(options.model, {
    computeDtype: options.dtype ?? "float32", device: options.device ?? "auto", tf32: options.tf32 ?? false,
  });
  if (options.adapter !== undefined) {
    if (!existsSync(path.join(options.adapter, "adapter_config.json"))) {
      throw new FileFormatError(options.adapter, "is not a PEFT adapter folder (adapter_config.json is missing)");
    }
    await model.loadAdapter(options.adapter);
    await model.mergeLora();
  }
  return model;
}
