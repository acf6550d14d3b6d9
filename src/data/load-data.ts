// loadData: the config's data: section + the model's tokenizer -> tokenized train and validation
// examples and a report of what was done (rows, split, skipped rows, truncations).
import path from "node:path";
import type { Tokenizer } from "@huggingface/tokenizers";
import { buildExample, type ExampleContext } from "./build-example.js";
import type { ChatTemplate } from "./chat-template.js";
import type { DataConfig } from "./config.js";
import { DataError } from "./errors.js";
import { readRows, type RawRow } from "./read-rows.js";
import { splitKey, splitPoint, validationRows } from "./split.js";
import { parseTemplate } from "./template.js";
import type { DataReport, Example, PreparedData, TaskKind } from "./types.js";

export interface DataContext {
  tokenizer: Tokenizer;
  kind: TaskKind;
  /** Relative train_file / valid_file paths are resolved against this folder (the config file's). */
  baseDir: string;
  /** Ends every target (seq2seq labels, causal completions). */
  eosTokenId: number;
  /** The model's chat template, needed when data.chat_template is true. */
  chatTemplate?: ChatTemplate;
}

export async function loadData(config: DataConfig, ctx: DataContext): Promise<PreparedData> {
  if (config.chat_template && ctx.kind === "seq2seq") {
    throw new DataError("data.chat_template", "applies to causal (decoder-only) chat models; this model is seq2seq, so set it to false");
  }
  if (config.chat_template && !ctx.chatTemplate) {
    throw new DataError("data.chat_template", "is true, but the model's tokenizer_config.json has no chat_template");
  }
  if (config.system_prompt !== undefined && !config.chat_template) {
    throw new DataError("data.system_prompt", "is only used with chat_template: true (put plain instructions in prompt_template)");
  }
  const template = config.prompt_template === undefined
    ? parseTemplate(`{${config.input_field.replace(/[{}]/g, (b) => b + b)}}`, "data.input_field")
    : parseTemplate(config.prompt_template);
  const exampleContext: ExampleContext = {
    kind: ctx.kind,
    tokenizer: ctx.tokenizer,
    eosTokenId: ctx.eosTokenId,
    config,
    template,
    ...(ctx.chatTemplate && config.chat_template ? { chatTemplate: ctx.chatTemplate } : {}),
    categoryIds: new Map(),
  };
  const report: DataReport = { rows: 0, train: 0, valid: 0, skipped: [], truncatedInputs: 0, truncatedTargets: 0 };
  const onBadRow = (source: string, reason: string) => {
    if (config.on_bad_row === "error") throw new DataError(source, reason);
    report.skipped.push({ source, reason });
  };

  // Rows -> examples; a row that cannot become one is a bad row like a malformed line.
  const prepare = (rows: RawRow[]): { row: RawRow; example: Example }[] => {
    const out: { row: RawRow; example: Example }[] = [];
    for (const row of rows) {
      let built;
      try {
        built = buildExample(exampleContext, row.fields, row.source, row.index);
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
        onBadRow(e.where, e.reason);
        continue;
      }
      if (built.truncatedInput) report.truncatedInputs++;
      if (built.truncatedTarget) report.truncatedTargets++;
      out.push({ row, example: built.example });
    }
    return out;
  };
  const resolve = (file: string) => path.resolve(ctx.baseDir, file);

  const trainRows = readRows(resolve(config.train_file), config.format, onBadRow);
  const prepared = prepare(trainRows);
  let train: Example[];
  let valid: Example[];
  if (config.valid_file !== undefined) {
    const validRows = readRows(resolve(config.valid_file), config.format, onBadRow);
    train = prepared.map((p) => p.example);
    valid = prepare(validRows).map((p) => p.example);
  } else {
    const keyFields = [...template.fields, config.target_field, ...(config.category_field ? [config.category_field] : [])];
    const points = prepared.map((p) => splitPoint(config.split_seed, splitKey(p.row.fields, keyFields)));
    const held = validationRows(points, config.valid_ratio);
    train = prepared.filter((_, i) => !held.has(i)).map((p) => p.example);
    valid = prepared.filter((_, i) => held.has(i)).map((p) => p.example);
  }
  report.rows = train.length + valid.length + report.skipped.length;
  if (train.length === 0) {
    throw new DataError(config.train_file, `no training examples (${report.rows} rows, ${report.skipped.length} skipped, ${valid.length} held out for validation)`);
  }
  report.train = train.length;
  report.valid = valid.length;
  const data: PreparedData = { kind: ctx.kind, train, valid, report };
  if (exampleContext.categoryIds.size > 0) data.categories = [...exampleContext.categoryIds.keys()];
  return data;
}
