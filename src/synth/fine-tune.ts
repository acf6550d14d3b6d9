// Curation's slice-0 fine-tune through the trainer: curate.train is a training config's sections
// (model, data, train) without the paths, which curation sets (the base model, slice 0,
// the run folder). Slice 0 trains as a whole (no validation split) unless data.valid_ratio says
// otherwise. A chat model (one with a chat template) is fine-tuned through its template, since
// the local engine asks it through that template. An interrupted fine-tune resumes from its last
// checkpoint on the next run.
import path from "node:path";
import { resolveConfig } from "../config/load.js";
import { readChatTemplate } from "../data/chat-template.js";
import { inspectModelFolder } from "../models/model-folder.js";
import { listCheckpoints } from "../train/checkpoint.js";
import { train } from "../train/trainer.js";
import type { FineTune } from "./curate.js";

type Section = Record<string, unknown>;

function section(settings: Record<string, unknown>, name: string): Section {
  const v = settings[name];
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`curate.train.${name}: expected a section (a mapping of keys)`);
  return v as Section;
}

export const fineTuneWithTrainer: FineTune = async (request) => {
  const s = request.settings;
  for (const key of Object.keys(s)) {
    if (!["model", "data", "train"].includes(key)) {
      throw new Error(`curate.train.${key}: expected the sections of a training config (model, data, train), e.g. curate.train.train.lr`);
    }
  }
  for (const [name, key] of [["model", "path"], ["data", "train_file"]] as const) {
    if (section(s, name)[key] !== undefined) throw new Error(`curate.train.${name}.${key}: set by curation (curate.base_model, slice 0); leave it out`);
  }
  // The local engine renders messages with the model's chat template when it has one (a causal
  // chat model): training must see the prompts the same way.
  const chat = readChatTemplate(request.baseModel) !== undefined && inspectModelFolder(request.baseModel).config.model_type !== "t5";
  const data = section(s, "data");
  if (data.chat_template !== undefined && data.chat_template !== chat) {
    throw new Error(
      `curate.train.data.chat_template: the curation model is asked ${chat ? "through its chat template" : "with plain prompts (it has no chat template)"}, ` +
        `so the fine-tune must use ${chat ? "it (true)" : "none (false)"}; leave the key out`,
    );
  }
  let config;
  try {
    config = resolveConfig({
      values: {
        ...s,
        model: { ...section(s, "model"), path: request.baseModel },
        data: { valid_ratio: 0, ...data, chat_template: chat, train_file: request.trainFile },
        output: { dir: request.outputDir },
      },
    });
  } catch (e) {
    throw new Error(`curate.train: ${(e as Error).message}`);
  }
  const resume = listCheckpoints(path.join(request.outputDir, "checkpoints")).length > 0;
  const result = await train({
    config,
    ...(resume ? { resume: true } : { overwrite: true }),
    ...(request.signal ? { signal: request.signal } : {}),
  });
  if (result.status === "interrupted" || !result.finalDir) {
    throw new Error(`the slice-0 fine-tune stopped at step ${result.globalStep}; run the same command again to resume it`);
  }
  return config.model.method === "lora" ? { modelDir: request.baseModel, adapterDir: result.finalDir } : { modelDir: result.finalDir };
};
