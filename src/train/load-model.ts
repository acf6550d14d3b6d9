// The model a run trains, as the config says: full fine-tuning (every parameter trainable, fp32
// masters) or LoRA on a frozen base; from the base model at step 0, or from a checkpoint when
// resuming (the whole model, or the base plus the checkpoint's adapter); with gradient
// checkpointing and the chunked loss when train.gradient_checkpointing and train.chunked_loss say
// so.
import { existsSync } from "node:fs";
import path from "node:path";
import { Model } from "../models/model.js";
import type { TrainConfig } from "../config/schema.js";
import { RunFolderError } from "./run-folder.js";

export async function loadModelForTraining(config: TrainConfig, resumeFrom?: string): Promise<Model> {
  const m = config.model;
  if (resumeFrom) {
    const hasAdapter = existsSync(path.join(resumeFrom, "adapter_config.json"));
    if (hasAdapter !== (m.method === "lora")) {
      throw new RunFolderError(
        `${resumeFrom}: holds ${hasAdapter ? "a LoRA adapter" : "a whole model"}, but model.method is ${m.method}; resume with the method the run was started with`,
      );
    }
  }
  if (m.method === "full") {
    const model = await Model.load(resumeFrom ?? m.path, { trainable: true, computeDtype: m.dtype, device: m.device, tf32: m.tf32 });
    model.setGradientCheckpointing(config.train.gradient_checkpointing);
    model.setChunkedLoss(config.train.chunked_loss);
    return model;
  }
  // The frozen base can stay in its file dtype (memory-mapped): it is never updated.
  const model = await Model.load(m.path, { keepFrozenInFileDtype: true, computeDtype: m.dtype, device: m.device, tf32: m.tf32 });
  if (resumeFrom) {
    await model.loadAdapter(resumeFrom);
  } else {
    model.applyLora({
      r: m.lora.r,
      alpha: m.lora.alpha,
      dropout: m.lora.dropout,
      ...(m.lora.target_modules !== null ? { targetModules: m.lora.target_modules } : {}),
      useRslora: m.lora.use_rslora,
      seed: config.train.seed,
    });
  }
  model.setGradientCheckpointing(config.train.gradient_checkpointing);
  model.setChunkedLoss(config.train.chunked_loss);
  return model;
}
