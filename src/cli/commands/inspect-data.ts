// `s2s-train inspect-data --config FILE | --model DIR --data FILE [-n N]`
import type { CommandModule } from "yargs";
import { runInspectData } from "../../data/inspect.js";

interface InspectDataArgs {
  config?: string;
  model?: string;
  data?: string;
  n: number;
  split: "train" | "valid";
  "input-field"?: string;
  "target-field"?: string;
  "prompt-template"?: string;
  "on-bad-row"?: "error" | "skip";
}

export const inspectDataCommand: CommandModule<object, InspectDataArgs> = {
  command: "inspect-data",
  describe: "Show how the data becomes examples: the report and N decoded examples with the tokens that carry loss",
  builder: (y) =>
    y
      .option("config", { type: "string", describe: "Training config (YAML): its data: section and model folder" })
      .option("model", { type: "string", describe: "Model folder (config.json + tokenizer.json; no weights needed)" })
      .option("data", { type: "string", describe: "Data file (JSON, JSONL or CSV), with --model or overriding the config's" })
      .option("n", { alias: "num", type: "number", default: 3, describe: "Examples to print" })
      .option("split", { choices: ["train", "valid"] as const, default: "train" as const, describe: "Which side of the split to print" })
      .option("input-field", { type: "string", describe: "Field holding the input (data.input_field)" })
      .option("target-field", { type: "string", describe: "Field holding the target (data.target_field)" })
      .option("prompt-template", { type: "string", describe: "Template with {field} placeholders (data.prompt_template)" })
      .option("on-bad-row", { choices: ["error", "skip"] as const, describe: "Stop at a bad row, or skip and list it (data.on_bad_row)" })
      .check((a) => {
        if (a.config === undefined && (a.model === undefined || a.data === undefined)) {
          throw new Error("Give --config FILE, or --model DIR and --data FILE");
        }
        if (!Number.isInteger(a.n) || a.n < 0) throw new Error(`-n: expected an integer >= 0, got ${a.n}`);
        return true;
      }),
  handler: async (args) => {
    process.stdout.write(
      await runInspectData({
        n: args.n,
        split: args.split,
        ...(args.config !== undefined ? { config: args.config } : {}),
        ...(args.model !== undefined ? { model: args.model } : {}),
        ...(args.data !== undefined ? { data: args.data } : {}),
        ...(args["input-field"] !== undefined ? { inputField: args["input-field"] } : {}),
        ...(args["target-field"] !== undefined ? { targetField: args["target-field"] } : {}),
        ...(args["prompt-template"] !== undefined ? { promptTemplate: args["prompt-template"] } : {}),
        ...(args["on-bad-row"] !== undefined ? { onBadRow: args["on-bad-row"] } : {}),
      }),
    );
  },
};
