// Checkpoints in the run folder (DESIGN.md "Files a run leaves"):
//   checkpoints/checkpoint-<step>/  adapter_model.safetensors + adapter_config.json (LoRA) or
//                                   model.safetensors + config.json (full), the tokenizer files,
//                                   optimizer.safetensors, trainer_state.json
// A checkpoint is written whole into checkpoint-<step>.tmp and then renamed, so a crash never
// leaves a half checkpoint under a real name; leftovers of a crash are removed at the next start.
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import type { Model } from "../models/model.js";
import { syncFolder, temporarySibling } from "../io/atomic-write.js";
import { TRAINER_STATE_FILE, writeTrainerState, type TrainerState } from "./trainer-state.js";

export const OPTIMIZER_FILE = "optimizer.safetensors";
const CHECKPOINT_NAME = /^checkpoint-(\d+)$/;

/** Files copied from the base model folder so that a checkpoint or final/ is usable on its own. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

export type Method = "lora" | "full";

export interface CheckpointInfo {
  step: number;
  path: string;
}

/** The checkpoints of a run, oldest first (only complete ones: a folder with trainer_state.json). */
export function listCheckpoints(checkpointsDir: string): CheckpointInfo[] {
  if (!existsSync(checkpointsDir)) return [];
  return readdirSync(checkpointsDir)
    .map((name) => ({ name, m: CHECKPOINT_NAME.exec(name) }))
    .filter(({ name, m }) => m && existsSync(path.join(checkpointsDir, name, TRAINER_STATE_FILE)))
    .map(({ name, m }) => ({ step: Number(m![1]), path: path.join(checkpointsDir, name) }))
    .sort((a, b) => a.step - b.step);
}

/** Removes what an interrupted write left behind (checkpoint-N.tmp, temporary files). */
export function removeIncompleteCheckpoints(checkpointsDir: string): string[] {
  if (!existsSync(checkpointsDir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(checkpointsDir)) {
    if (!CHECKPOINT_NAME.test(name)) {
      rmSync(path.join(checkpointsDir, name), { recursive: true, force: true });
      removed.push(name);
    }
  }
  return removed;
}

export function copyTokenizerFiles(fromModelDir: string, toDir: string): void {
  for (const f of TOKENIZER_FILES) {
    const src = path.join(fromModelDir, f);
    if (existsSync(src)) copyFileSync(src, path.join(toDir, f));
  }
}

/** Writes the model's weights (adapter or whole model) and tokenizer files into an existing folder. */
export async function writeWeights(model: Model, method: Method, dir: string, baseModelDir: string): Promise<void> {
  if (method === "lora") await model.saveAdapter(dir);
  else await model.save(dir);
  copyTokenizerFiles(baseModelDir, dir);
}

/** Replaces `target` with the folder `ready` in one rename (the old one, if any, is removed after). */
export function renameFolderInto(ready: string, target: string): void {
  syncFolder(ready);
  if (existsSync(target)) {
    const old = temporarySibling(target);
    renameSync(target, old);
    renameSync(ready, target);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(ready, target);
  }
  syncFolder(path.dirname(target));
}

export interface SaveCheckpointArgs {
  model: Model;
  method: Method;
  baseModelDir: string;
  checkpointsDir: string;
  state: TrainerState;
}

/** Writes checkpoint-<step> atomically and returns its path. */
export async function saveCheckpoint(a: SaveCheckpointArgs): Promise<string> {
  const step = a.state.global_step;
  const target = path.join(a.checkpointsDir, `checkpoint-${step}`);
  const temp = `${target}.tmp`;
  mkdirSync(a.checkpointsDir, { recursive: true });
  rmSync(temp, { recursive: true, force: true });
  mkdirSync(temp);
  try {
    await writeWeights(a.model, a.method, temp, a.baseModelDir);
    // AdamW's step count: the applied updates (a float16 overflow skips one without a step).
    await a.model.saveOptimizerState(path.join(temp, OPTIMIZER_FILE), a.state.optimizer_steps ?? step);
    writeTrainerState(path.join(temp, TRAINER_STATE_FILE), a.state);
    renameFolderInto(temp, target);
  } catch (e) {
    rmSync(temp, { recursive: true, force: true });
    throw e;
  }
  return target;
}

/**
 * Deletes the oldest checkpoints until at most `limit` remain, never the best one nor the newest
 * (so with limit 1 and a best that is not the newest, two remain, as in Hugging Face's Trainer).
 * Returns the deleted paths.
 */
export function rotateCheckpoints(checkpointsDir: string, limit: number | null, bestPath: string | null): string[] {
  if (limit === null) return [];
  const all = listCheckpoints(checkpointsDir);
  const newest = all[all.length - 1]?.path;
  const deletable = all.filter((c) => c.path !== bestPath && c.path !== newest);
  const deleted: string[] = [];
  let remaining = all.length;
  for (const c of deletable) {
    if (remaining <= limit) break;
    rmSync(c.path, { recursive: true, force: true });
    deleted.push(c.path);
    remaining--;
  }
  if (deleted.length > 0) syncFolder(checkpointsDir);
  return deleted;
}

export function isCheckpointFolder(dir: string): boolean {
  return existsSync(dir) && statSync(dir).isDirectory() && existsSync(path.join(dir, TRAINER_STATE_FILE));
}
