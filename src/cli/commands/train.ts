// `s2s-train train [--config FILE] [flags] [key=value ...]`
import type { CommandModule, Options } from "yargs";
import { trainConfigSchema } from "../../config/schema.js";
import { describeOf, schemaAt } from "../../config/schema-walk.js";
import { runTrain } from "../../train/run-train.js";

/** Flags for the keys people change most; each is also reachable as a dotted override. */
const FLAG_KEYS = {
  model: "model.path",
  method: "model.method",
  "train-file": "data.train_file",
  "output-dir": "output.dir",
  epochs: "train.epochs",
  "max-steps": "train.max_steps",
  lr: "train.lr",
  "batch-size": "data.batch_size",
  seed: "train.seed",
  threads: "train.threads",
  device: "model.device",
  dtype: "model.dtype",
  tf32: "model.tf32",
  "gradient-checkpointing": "train.gradient_checkpointing",
  "chunked-loss": "train.chunked_loss",
} as const;

type FlagName = keyof typeof FLAG_KEYS;
const NUMBER_FLAGS = new Set<FlagName>(["epochs", "max-steps", "lr", "batch-size", "seed", "threads"]);
const BOOLEAN_FLAGS = new Set<FlagName>(["gradient-checkpointing", "chunked-loss", "tf32"]);

type TrainArgs = { config?: string; example?: string; resume?: string; overwrite: boolean; overrides?: string[] } & Partial<Record<FlagName, string | number | boolean>>;

function flagOptions(): Record<string, Options> {
  const options: Record<string, Options> = {};
  for (const [flag, key] of Object.entries(FLAG_KEYS) as [FlagName, string][]) {
    const schema = schemaAt(trainConfigSchema, key.split("."));
    options[flag] = {
      type: NUMBER_FLAGS.has(flag) ? "number" : BOOLEAN_FLAGS.has(flag) ? "boolean" : "string",
      describe: `${schema ? describeOf(schema) ?? "" : ""} (${key})`,
      group: "Config keys:",
    };
  }
  return options;
}

export const trainCommand: CommandModule<object, TrainArgs> = {
  command: "train [overrides..]",
  describe: "Fine-tune a model (config: defaults < --config file < flags < key=value overrides)",
  builder: (y) =>
    y
      .positional("overrides", { type: "string", array: true, describe: "Dotted overrides, e.g. train.lr=3e-5 data.batch_size=8" })
      .option("config", { alias: "c", type: "string", describe: "YAML config file (s2s-train init writes one)" })
      .option("example", { type: "string", describe: "Run a config bundled with the package (default, default-lora); with no --config, the default" })
      .option("resume", { type: "string", describe: "Continue from the latest checkpoint of the run, or from the checkpoint folder given" })
      .option("overwrite", { type: "boolean", default: false, describe: "Start from step 0 even if the run folder holds an earlier run (deletes it)" })
      .options(flagOptions()) as never,
  handler: async (args) => {
    const flags: Record<string, unknown> = {};
    for (const [flag, key] of Object.entries(FLAG_KEYS)) flags[key] = args[flag as FlagName];
    await runTrain({
      ...(args.config !== undefined ? { config: args.config } : {}),
      ...(args.example !== undefined ? { example: args.example } : {}),
      flags,
      overrides: args.overrides ?? [],
      ...(args.resume !== undefined ? { resume: args.resume } : {}),
      overwrite: args.overwrite,
    });
  },
};
