// Chat templates (tokenizer_config.json's "chat_template", Jinja) through @huggingface/jinja, the
// same renderer transformers.js uses; `s2s-train serve` renders chat requests with renderChat. A row becomes a user turn (the rendered prompt) and an
// assistant turn (the target); what the template prints after the prompt-with-generation-prompt
// is the completion, the part a causal model learns.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";
import { readJsonFile } from "../models/json-file.js";
import { DataError } from "./errors.js";

export interface ChatTemplate {
  template: Template;
  /** Variables every render gets: bos_token, eos_token, ... from tokenizer_config.json. */
  variables: Record<string, string>;
  /** Where the template came from, for messages. */
  file: string;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** The special-token strings of tokenizer_config.json ("x" or {"content": "x"}). */
function tokenString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

/**
 * The model folder's chat template, or undefined when it has none: tokenizer_config.json's
 * chat_template, else chat_template.jinja (where transformers >= 4.47 saves it).
 */
export function readChatTemplate(modelDir: string): ChatTemplate | undefined {
  let file = path.join(modelDir, "tokenizer_config.json");
  const config = existsSync(file) ? readJsonFile(file).value as Record<string, unknown> : {};
  let source = config.chat_template;
  const jinjaFile = path.join(modelDir, "chat_template.jinja");
  if (source === undefined && existsSync(jinjaFile)) {
    source = readFileSync(jinjaFile, "utf8");
    file = jinjaFile;
  }
  // Some tokenizers list several named templates; "default" is the one transformers picks.
  if (Array.isArray(source)) {
    const named = source.find((t) => (t as { name?: unknown })?.name === "default") as { template?: unknown } | undefined;
    source = named?.template;
  }
  if (typeof source !== "string") return undefined;
  const variables: Record<string, string> = {};
  for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
    const s = tokenString(config[key]);
    if (s !== undefined) variables[key] = s;
  }
  try {
    return { template: new Template(source), variables, file };
  } catch (e) {
    throw new DataError(file, `chat_template is not a template @huggingface/jinja can parse (${(e as Error).message})`);
  }
}

/** The conversation as the template prints it; `source` names the data in errors. */
export function renderChat(chat: ChatTemplate, messages: ChatMessage[], addGenerationPrompt: boolean, source: string): string {
  try {
    return chat.template.render({ ...chat.variables, messages, add_generation_prompt: addGenerationPrompt });
  } catch (e) {
    throw new DataError(source, `the chat template (${chat.file}) failed: ${(e as Error).message}`);
  }
}

/**
 * Prompt (everything up to and including the assistant's opening) and completion (the assistant's
 * answer and whatever the template closes its turn with) as text.
 */
export function chatPromptAndCompletion(
  chat: ChatTemplate, prompt: string, target: string, systemPrompt: string | undefined, source: string,
): { prompt: string; completion: string } {
  const head: ChatMessage[] = systemPrompt === undefined ? [] : [{ role: "system", content: systemPrompt }];
  head.push({ role: "user", content: prompt });
  const promptText = renderChat(chat, head, true, source);
  const full = renderChat(chat, [...head, { role: "assistant", content: target }], false, source);
  if (!full.startsWith(promptText)) {
    throw new DataError(source, `the chat template (${chat.file}) does not render the conversation as the prompt followed by the answer, so the completion cannot be told apart`);
  }
  return { prompt: promptText, completion: full.slice(promptText.length) };
}
