// A model folder's chat template (tokenizer_config.json's "chat_template", Jinja) rendered with
// @huggingface/jinja, the renderer transformers.js uses, with the variables transformers passes:
// the messages, add_generation_prompt and the special-token strings (bos_token, eos_token, ...).
import { existsSync } from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";
import { FileFormatError, readJsonFile } from "../models/json-file.js";
import type { ChatMessage } from "./types.js";

export interface ChatTemplate {
  template: Template;
  /** bos_token, eos_token, pad_token, unk_token from tokenizer_config.json. */
  variables: Record<string, string>;
  /** Where the template came from, for messages. */
  file: string;
}

/** A special token in tokenizer_config.json: "x" or {"content": "x", ...}. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  const content = (v as { content?: unknown } | null)?.content;
  return typeof content === "string" ? content : undefined;
}

/** The folder's chat template, or undefined when tokenizer_config.json has none. */
export function readChatTemplate(modelDir: string): ChatTemplate | undefined {
  const file = path.join(modelDir, "tokenizer_config.json");
  if (!existsSync(file)) return undefined;
  const config = readJsonFile(file).value as Record<string, unknown>;
  let source = config.chat_template;
  // A list of named templates: "default" is the one transformers uses for plain chat.
  if (Array.isArray(source)) source = (source.find((t) => (t as { name?: unknown })?.name === "default") as { template?: unknown } | undefined)?.template;
  if (source === undefined || source === null) return undefined;
  if (typeof source !== "string") throw new FileFormatError(file, 'chat_template: expected a string (or a list of {name, template} with a "default")');
  const variables: Record<string, string> = {};
  for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
    const s = tokenString(config[key]);
    if (s !== undefined) variables[key] = s;
  }
  try {
    return { template: new Template(source), variables, file };
  } catch (e) {
    throw new FileFormatError(file, `chat_template cannot be parsed (${(e as Error).message})`);
  }
}

/** The conversation as the model was trained to see it; with the assistant's opening when asked. */
export function renderChat(chat: ChatTemplate, messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  try {
    return chat.template.render({ ...chat.variables, messages, add_generation_prompt: addGenerationPrompt });
  } catch (e) {
    throw new FileFormatError(chat.file, `chat_template failed to render (${(e as Error).message})`);
  }
}
