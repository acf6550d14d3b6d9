// `s2s-train generate --model DIR [--adapter DIR] --prompt TEXT | --input FILE.jsonl --output FILE.jsonl | --interactive [--compare FILE.yaml] [generation options]`
import type { CommandModule } from "yargs";
import type { ComputeDTypeName, DeviceName } from "../../../bindings/native.js";
import { generationFlagOptions, generationOptionsFromFlags } from "../../generate/option-flags.js";
import { runGenerateCommand } from "../../generate/run-generate-command.js";
import { modelRunFlagOptions } from "../model-flags.js";

interface GenerateArgs {
  model: string;
  adapter?: string;
  prompt?: string[];
  input?: string;
  "input-field": string;
  output?: string;
  compare?: string;
  interactive: boolean;
  "batch-size": number;
  dtype: ComputeDTypeName;
  device: DeviceName;
  tf32: boolean;
  threads?: number;
  [generationFlag: string]: unknown;
}

export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: "generate",
  describe: "Generate text with a model (+ LoRA adapter): prompts, a JSONL file, a comparison of settings, or a session",
  builder: (y) =>
    y
      .option("model", { type: "string", demandOption: true, describe: "Hugging Face model folder" })
      .option("adapter", { type: "string", describe: "PEFT LoRA adapter folder trained on --model (merged at load)" })
      .option("prompt", { type: "string", array: true, describe: "Prompt text (repeat for several)" })
      .option("input", { type: "string", describe: "JSONL file of prompts, one {\"input\": \"...\"} per line" })
      .option("input-field", { type: "string", default: "input", describe: "Field of each --input row holding the prompt" })
      .option("output", { type: "string", describe: "JSONL file for the rows {input, output, tokens, score} (written atomically)" })
      .option("compare", { type: "string", describe: "YAML list of named generation settings to run side by side" })
      .option("interactive", { type: "boolean", default: false, describe: "Prompt by prompt; tokens stream as they come" })
      .option("batch-size", { type: "number", default: 8, describe: "Prompts generated together (left-padded batch)" })
      .options(modelRunFlagOptions)
      .option("threads", { type: "number", describe: "Native threads (default: all cores)" })
      .options(generationFlagOptions()) as never,
  handler: async (args) => {
    await runGenerateCommand({
      model: args.model,
      ...(args.adapter !== undefined ? { adapter: args.adapter } : {}),
      ...(args.prompt !== undefined ? { prompts: args.prompt.map(String) } : {}),
      ...(args.input !== undefined ? { input: args.input } : {}),
      inputField: args["input-field"],
      ...(args.output !== undefined ? { output: args.output } : {}),
      ...(args.compare !== undefined ? { compare: args.compare } : {}),
      interactive: args.interactive,
      batchSize: args["batch-size"],
      dtype: args.dtype,
      device: args.device,
      tf32: args.tf32,
      ...(args.threads !== undefined ? { threads: args.threads } : {}),
      generation: generationOptionsFromFlags(args),
    });
  },
};
