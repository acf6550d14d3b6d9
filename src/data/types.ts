// The contract between data preparation (src/data) and the trainer (src/train): what a prepared
// dataset is, and how it becomes native batches. Data preparation implements these; the trainer
// only consumes them.
import type { NativeBatch } from "../../bindings/native.js";

/** Decoder-only models learn prompt + completion in one sequence; T5 maps encoder input to labels. */
export type TaskKind = "causal" | "seq2seq";

/** One tokenized example, ready to be batched. */
export interface Example {
  /** Stable index of the row in its source (the split and the sampler are defined over it). */
  id: number;
  /** Where it came from, for messages: "data/train.jsonl:17". */
  source: string;
  /** causal: prompt + completion ids; seq2seq: encoder ids. */
  inputIds: Int32Array;
  /** causal: same length as inputIds, -100 where no loss is taken (the prompt, unless configured);
   *  seq2seq: the target ids, ending with eos. */
  labels: Int32Array;
  /** causal only: the prompt's token count (generation-based evaluation feeds inputIds[0:promptLength]). */
  promptLength: number;
  /** Per-label-token category ids (same length as labels; -1 where the label is -100), when the
   *  data carries categories. */
  categoryIds?: Int32Array;
  /** The example's category name, when the data carries categories. */
  category?: string;
  /** The untokenized input (after the template) and target, for generation-based metrics. */
  text: { input: string; target: string };
}

/** What preparation did, for the run's report and the console. */
export interface DataReport {
  rows: number;
  train: number;
  valid: number;
  /** Rows skipped (on_bad_row: skip), with file:line and why. `rows` = train + valid + skipped. */
  skipped: { source: string; reason: string }[];
  truncatedInputs: number;
  truncatedTargets: number;
}

export interface PreparedData {
  kind: TaskKind;
  train: Example[];
  valid: Example[];
  report: DataReport;
  /** Category names by id (Example.categoryIds index into it), when data.category_field is set. */
  categories?: string[];
}

/** Pads a list of examples into one native batch (dynamic padding to the longest row). */
export type Collate = (examples: readonly Example[]) => NativeBatch;
