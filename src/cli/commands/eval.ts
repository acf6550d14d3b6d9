// `s2s-train eval --model DIR [--adapter DIR] --data FILE [--metrics ...] [generation options] [--output DIR]`
import type { CommandModule, Options } from "yargs";
import type { DeviceName } from "../../../bindings/native.js";
import { generationFlagOptions, generationOptionsFromFlags } from "../../generate/option-flags.js";
import { DEFAULT_EVAL_MAX_NEW_TOKENS, DEFAULT_EVAL_METRICS, runEval } from "../../eval/run-eval.js";
import { modelRunFlagOptions } from "../model-flags.js";

/** Every generation option as a flag (transformers' names), with eval's own length default. */
function evalGenerationFlags(): Record<string, Options> {
  const options = generationFlagOptions();
  const maxNewTokens = options["max-new-tokens"]!;
  options["max-new-tokens"] = {
    ...maxNewTokens,
    describe: String(maxNewTokens.describe).replace(/; default: generation_config\.json$/, "") + ` (default ${DEFAULT_EVAL_MAX_NEW_TOKENS} unless --max-length is given)`,
  };
  return options;
}

interface EvalArgs {
  model: string;
  adapter?: string;
  data: string;
  metrics: string;
  "input-field": string;
  "target-field": string;
  "category-field"?: string;
  "prompt-template"?: string;
  "chat-template": boolean;
  "system-prompt"?: string;
  "batch-size": number;
  "max-samples"?: number;
  "max-input-length"?: number;
  output: string;
  threads?: number;
  dtype: "float32" | "bfloat16" | "float16";
  device: DeviceName;
  tf32: boolean;
  [flag: string]: unknown;
}

export const evalCommand: CommandModule<object, EvalArgs> = {
  command: "eval",
  describe: "Generate for every example of a data file and score the predictions (writes predictions.jsonl and metrics.json)",
  builder: (y) =>
    y
      .option("model", { type: "string", demandOption: true, describe: "Hugging Face model folder" })
      .option("adapter", { type: "string", describe: "PEFT LoRA adapter folder trained on --model (merged before generating)" })
      .option("data", { type: "string", demandOption: true, describe: "JSON, JSONL or CSV file of examples" })
      .option("metrics", {
        type: "string", default: DEFAULT_EVAL_METRICS,
        describe: "Comma-separated: bleu, chrf, rouge (= rouge1,rouge2,rougeL,rougeLsum), em, f1, soft_em",
      })
      .option("input-field", { type: "string", default: "input", describe: "Field holding the model input" })
      .option("target-field", { type: "string", default: "target", describe: "Field holding the reference (a string, or a list of strings in JSON)" })
      .option("category-field", { type: "string", describe: "Field holding a category name, for per-category scores" })
      .option("prompt-template", { type: "string", describe: "The input built from the row's {field}s, as data.prompt_template in training (default: the input field)" })
      .option("chat-template", { type: "boolean", default: false, describe: "Wrap the input with the model's chat template, as data.chat_template in training" })
      .option("system-prompt", { type: "string", describe: "With --chat-template: a system message before each input" })
      .option("batch-size", { type: "number", default: 8, describe: "Prompts generated together" })
      .option("max-samples", { type: "number", describe: "Evaluate only the first N examples" })
      .option("max-input-length", {
        type: "number",
        describe: "Cut longer prompts to this many tokens, as data.max_input_length does in training (default: what the model's positions allow)",
      })
      .option("output", { type: "string", default: "runs/eval", describe: "Folder for predictions.jsonl and metrics.json" })
      .options(modelRunFlagOptions)
      .option("threads", { type: "number", describe: "Threads for the native core (default: S2S_NUM_THREADS or every logical core)" })
      .options(evalGenerationFlags()) as never,
  handler: async (args) => {
    const generation = generationOptionsFromFlags(args);
    const progress = process.stderr.isTTY
      ? (done: number, total: number) => process.stderr.write(`\rgenerated ${done}/${total}${done === total ? "\n" : ""}`)
      : undefined;
    const { evaluation, files, table, truncatedInputs, maxInputLength } = await runEval({
      model: args.model,
      ...(args.adapter !== undefined ? { adapter: args.adapter } : {}),
      data: args.data,
      metrics: args.metrics,
      inputField: args["input-field"],
      targetField: args["target-field"],
      ...(args["category-field"] !== undefined ? { categoryField: args["category-field"] } : {}),
      ...(args["prompt-template"] !== undefined ? { promptTemplate: args["prompt-template"] } : {}),
      chatTemplate: args["chat-template"],
      ...(args["system-prompt"] !== undefined ? { systemPrompt: args["system-prompt"] } : {}),
      batchSize: args["batch-size"],
      ...(args["max-samples"] !== undefined ? { maxSamples: args["max-samples"] } : {}),
      ...(args["max-input-length"] !== undefined ? { maxInputLength: args["max-input-length"] } : {}),
      generation,
      output: args.output,
      dtype: args.dtype,
      device: args.device,
      tf32: args.tf32,
      ...(args.threads !== undefined ? { threads: args.threads } : {}),
      ...(progress ? { onProgress: progress } : {}),
    });
    const seconds = evaluation.generationSeconds;
    if (truncatedInputs > 0) {
      process.stderr.write(`warning: ${truncatedInputs} of ${evaluation.count} prompts were longer than ${maxInputLength} tokens and were cut (--max-input-length)\n`);
    }
    process.stdout.write(
      `${table}\n\n${evaluation.count} examples, ${evaluation.generatedTokens} tokens generated in ${seconds.toFixed(1)} s ` +
        `(${(evaluation.generatedTokens / Math.max(seconds, 1e-9)).toFixed(1)} tokens/s)\n` +
        `wrote ${files.predictions} and ${files.metrics}\n`,
    );
  },
};
