// One row -> one tokenized Example: the prompt template (or chat template), tokenization with
// the model's tokenizer.json, truncation, and which tokens carry loss.
//   seq2seq: inputIds = the encoded input with the tokenizer's special tokens (T5 appends </s>),
//            cut to max_input_length keeping those specials; labels = target ids cut to
//            max_target_length - 1, then eos.
//   causal:  inputIds = prompt + completion + eos; the prompt keeps the tokenizer's leading
//            specials (Llama's <s>) but not trailing ones, and is cut to max_input_length; the
//            completion to max_target_length (eos included). labels = inputIds with the prompt
//            at -100 unless train_on_prompt (the model shifts them inside).
import type { Tokenizer } from "@huggingface/tokenizers";
import type { DataConfig } from "./config.js";
import { chatPromptAndCompletion, type ChatTemplate } from "./chat-template.js";
import { DataError } from "./errors.js";
import { fieldText, renderTemplate, type PromptTemplate } from "./template.js";
import type { Example, TaskKind } from "./types.js";

export const IGNORE_INDEX = -100;

export interface ExampleContext {
  kind: TaskKind;
  tokenizer: Tokenizer;
  eosTokenId: number;
  config: DataConfig;
  template: PromptTemplate;
  chatTemplate?: ChatTemplate;
  /** Category name -> id (data.category_field). */
  categoryIds: Map<string, number>;
}

export interface BuiltExample {
  example: Example;
  truncatedInput: boolean;
  truncatedTarget: boolean;
}

/** Token ids without special tokens, and the specials the tokenizer puts before and after. */
export function encodeParts(tokenizer: Tokenizer, text: string): { prefix: number[]; ids: number[]; suffix: number[] } {
  const plain: number[] = tokenizer.encode(text, { add_special_tokens: false }).ids;
  const full: number[] = tokenizer.encode(text).ids;
  // The post-processor wraps the plain ids: full = prefix + plain + suffix.
  for (let p = 0; p + plain.length <= full.length; p++) {
    if (plain.every((id, i) => full[p + i] === id)) {
      return { prefix: full.slice(0, p), ids: plain, suffix: full.slice(p + plain.length) };
    }
  }
  return { prefix: [], ids: plain, suffix: [] };
}

/**
 * A prompt as buildExample tokenizes it, for generating from text the way a model was trained:
 * seq2seq with the tokenizer's specials on both sides, causal with the leading ones. With
 * maxLength, a longer prompt is cut as training cuts it (seq2seq: the text's end, keeping the
 * specials; causal: everything after the first maxLength tokens).
 */
export function encodePrompt(tokenizer: Tokenizer, kind: TaskKind, text: string, maxLength = Infinity): number[] {
  const enc = encodeParts(tokenizer, text);
  if (kind === "seq2seq") {
    const room = Math.max(0, maxLength - enc.prefix.length - enc.suffix.length);
    return [...enc.prefix, ...enc.ids.slice(0, room), ...enc.suffix];
  }
  return [...enc.prefix, ...enc.ids].slice(0, maxLength);
}

function checkIds(ids: number[], source: string, what: string): void {
  if (ids.some((id) => id === undefined || !Number.isInteger(id))) {
    throw new DataError(source, `the tokenizer has no id for part of the ${what} (its vocabulary does not cover the text and it has no unknown token)`);
  }
}

export function buildExample(
  ctx: ExampleContext, fields: Record<string, unknown>, source: string, id: number,
): BuiltExample {
  const { config, tokenizer } = ctx;
  const input = renderTemplate(ctx.template, fields, source);
  const target = fieldText(fields, config.target_field, source, "target_field");
  if (target.trim() === "") throw new DataError(source, `field '${config.target_field}' (target_field) is empty`);
  let category: string | undefined;
  if (config.category_field !== undefined) {
    category = fieldText(fields, config.category_field, source, "category_field");
  }

  let inputIds: number[];
  let labels: number[];
  let promptLength = 0;
  let truncatedInput = false;
  let truncatedTarget = false;
  let text = { input, target };

  if (ctx.kind === "seq2seq") {
    const enc = encodeParts(tokenizer, input);
    const room = Math.max(0, config.max_input_length - enc.prefix.length - enc.suffix.length);
    truncatedInput = enc.ids.length > room;
    inputIds = [...enc.prefix, ...enc.ids.slice(0, room), ...enc.suffix];
    const targetIds = tokenizer.encode(target, { add_special_tokens: false }).ids;
    truncatedTarget = targetIds.length > config.max_target_length - 1;
    labels = [...targetIds.slice(0, config.max_target_length - 1), ctx.eosTokenId];
    checkIds(inputIds, source, "input");
    checkIds(labels, source, "target");
  } else {
    let promptIds: number[];
    let completionIds: number[];
    if (ctx.chatTemplate) {
      const chat = chatPromptAndCompletion(ctx.chatTemplate, input, target, config.system_prompt, source);
      text = { input: chat.prompt, target };
      // The template writes the special tokens itself (transformers tokenizes it without adding any).
      promptIds = tokenizer.encode(chat.prompt, { add_special_tokens: false }).ids;
      completionIds = tokenizer.encode(chat.completion, { add_special_tokens: false }).ids;
      // Chat models end the turn with their own end token; add eos only if the template did not.
      if (!completionIds.includes(ctx.eosTokenId)) completionIds.push(ctx.eosTokenId);
    } else {
      const enc = encodeParts(tokenizer, input);
      promptIds = [...enc.prefix, ...enc.ids];
      completionIds = [...tokenizer.encode(target, { add_special_tokens: false }).ids, ctx.eosTokenId];
    }
    truncatedInput = promptIds.length > config.max_input_length;
    promptIds = promptIds.slice(0, config.max_input_length);
    if (completionIds.length > config.max_target_length) {
      truncatedTarget = true;
      // Keep the end of turn: cut the answer, not its closing eos.
      completionIds = [...completionIds.slice(0, config.max_target_length - 1), ctx.eosTokenId];
    }
    checkIds(promptIds, source, "prompt");
    checkIds(completionIds, source, "completion");
    promptLength = promptIds.length;
    inputIds = [...promptIds, ...completionIds];
    labels = inputIds.map((t, i) => (i < promptLength && !config.train_on_prompt ? IGNORE_INDEX : t));
  }

  const example: Example = {
    id,
    source,
    inputIds: Int32Array.from(inputIds),
    labels: Int32Array.from(labels),
    promptLength,
    text,
  };
  if (category !== undefined) {
    let cid = ctx.categoryIds.get(category);
    if (cid === undefined) {
      cid = ctx.categoryIds.size;
      ctx.categoryIds.set(category, cid);
    }
    example.category = category;
    example.categoryIds = Int32Array.from(labels, (l) => (l === IGNORE_INDEX ? -1 : cid));
  }
  return { example, truncatedInput, truncatedTarget };
}
