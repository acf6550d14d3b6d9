// The `data:` section of a training config: where the examples are and how they become tokens.
// One zod schema is the single definition (types from z.infer, help text from .describe()).
import { z } from "zod";

export const dataConfigSchema = z
  .strictObject({
    train_file: z.string().describe("JSON, JSONL or CSV file of examples (relative to the config file)"),
    valid_file: z.string().optional().describe("Validation examples; when absent, valid_ratio of train_file is held out"),
    format: z.enum(["auto", "json", "jsonl", "csv"]).default("auto").describe("File format; auto picks by extension"),
    input_field: z.string().default("input").describe("Field holding the model input"),
    target_field: z.string().default("target").describe("Field holding the expected output"),
    category_field: z.string().optional().describe("Field holding a category name, for per-category metrics"),
    prompt_template: z.string().optional().describe("Template for the input with {field} placeholders ({{ and }} are literal braces); absent: the input field as it is"),
    chat_template: z.boolean().default(false).describe("Wrap the prompt with the tokenizer's chat template (chat models)"),
    system_prompt: z.string().optional().describe("With chat_template: a system message before each prompt"),
    train_on_prompt: z.boolean().default(false).describe("Causal models: also take loss on the prompt tokens"),
    max_input_length: z.number().int().positive().default(512).describe("Tokens kept of the input (encoder input or prompt)"),
    max_target_length: z.number().int().positive().default(128).describe("Tokens kept of the target"),
    valid_ratio: z.number().min(0).max(0.9).default(0.1).describe("Share of train_file held out when valid_file is absent"),
    split_seed: z.number().int().default(42).describe("Seed of the train/validation split"),
    batch_size: z.number().int().positive().default(8).describe("Examples per micro-batch"),
    group_by_length: z.boolean().default(true).describe("Batch examples of similar length together (less padding)"),
    pad_to_multiple_of: z.number().int().positive().nullable().default(null).describe("Pad each micro-batch's length (and T5's target length) up to a multiple of this, as transformers' pad_to_multiple_of: few distinct shapes, so a GPU replays its recorded steps (64 is usual); null: to the longest example"),
    on_bad_row: z.enum(["error", "skip"]).default("error").describe("A malformed row stops with file:line, or is skipped and counted"),
  })
  .describe("Training data");

export type DataConfig = z.infer<typeof dataConfigSchema>;
