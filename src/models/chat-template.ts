// A model folder's chat template: tokenizer_config.json's `chat_template` (one Jinja string, or a
// list of {name, template} where "default" is the one used), else a `chat_template.jinja` file
// (where newer transformers saves it), rendered through @huggingface/jinja with the variables
// transformers' apply_chat_template passes (messages, add_generation_prompt, the special tokens).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";
import { z } from "zod";
import { FileFormatError, readJsonFile, validate } from "./json-file.js";

export interface ChatMessage {
  role: string;
  content: string;
}

/** A template that fails while rendering (raise_exception, a bad variable): says which file. */
export class ChatTemplateError extends Error {
  readonly code = "S2S_CHAT_TEMPLATE";
  constructor(message: string) {
    super(message);
    this.name = "ChatTemplateError";
  }
}

const addedToken = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();

const tokenizerConfigSchema = z.looseObject({
  chat_template: z.union([
    z.string(),
    z.array(z.strictObject({ name: z.string(), template: z.string() })).min(1),
  ]).nullish(),
  bos_token: addedToken,
  eos_token: addedToken,
  unk_token: addedToken,
  pad_token: addedToken,
  sep_token: addedToken,
  cls_token: addedToken,
  mask_token: addedToken,
});

const SPECIAL_TOKEN_KEYS = ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"] as const;

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    /** The Jinja source. */
    readonly source: string,
    /** Where it came from (for error messages). */
    readonly file: string,
    /** bos_token, eos_token, … as strings, passed to the template as transformers does. */
    private readonly specialTokens: Record<string, string>,
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new FileFormatError(file, `chat_template: is not a Jinja template this version can parse (${(e as Error).message})`);
    }
  }

  /**
   * The prompt text for these messages. addGenerationPrompt (default true) appends what starts
   * the assistant's turn. Tokenize the result without adding special tokens (the template holds them).
   */
  render(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    try {
      return this.template.render({
        ...this.specialTokens,
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
      });
    } catch (e) {
      throw new ChatTemplateError(`${this.file}: chat_template failed on these messages: ${(e as Error).message}`);
    }
  }
}

/** The folder's chat template, or undefined when it has none. */
export function loadChatTemplate(dir: string): ChatTemplate | undefined {
  const configFile = path.join(dir, "tokenizer_config.json");
  const config = existsSync(configFile)
    ? validate(tokenizerConfigSchema, readJsonFile(configFile).value, configFile)
    : tokenizerConfigSchema.parse({});
  const specialTokens: Record<string, string> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const t = config[key];
    if (typeof t === "string") specialTokens[key] = t;
    else if (t) specialTokens[key] = t.content;
  }
  const t = config.chat_template;
  if (typeof t === "string") return new ChatTemplate(t, configFile, specialTokens);
  if (Array.isArray(t)) {
    const named = t.find((x) => x.name === "default");
    if (!named) {
      throw new FileFormatError(configFile, `chat_template: a list of templates needs one named "default" (found ${t.map((x) => x.name).join(", ")})`);
    }
    return new ChatTemplate(named.template, configFile, specialTokens);
  }
  const jinjaFile = path.join(dir, "chat_template.jinja");
  if (existsSync(jinjaFile)) return new ChatTemplate(readFileSync(jinjaFile, "utf8"), jinjaFile, specialTokens);
  return undefined;
}
