// `s2s-train init <run-name> [--runs-dir runs] [--model DIR] [--train-file FILE] [--force]`
import type { CommandModule } from "yargs";
import { runInit } from "../../config/init-run.js";

interface InitArgs {
  name: string;
  "runs-dir": string;
  model?: string;
  "train-file"?: string;
  force: boolean;
}

export const initCommand: CommandModule<object, InitArgs> = {
  command: "init <name>",
  describe: "Create runs/<name>/config.yaml: the default training config, every key commented",
  builder: (y) =>
    y
      .positional("name", { type: "string", demandOption: true, describe: "Run name (the folder under --runs-dir)" })
      .option("runs-dir", { type: "string", default: "runs", describe: "Folder of run folders" })
      .option("model", { type: "string", describe: "Model folder to put in the config" })
      .option("train-file", { type: "string", describe: "Training data file to put in the config" })
      .option("force", { type: "boolean", default: false, describe: "Replace an existing config.yaml" }) as never,
  handler: (args) => {
    const r = runInit({
      name: args.name, runsDir: args["runs-dir"], force: args.force,
      ...(args.model !== undefined ? { model: args.model } : {}),
      ...(args["train-file"] !== undefined ? { trainFile: args["train-file"] } : {}),
    });
    process.stdout.write(`created ${r.configFile}\nedit it, then: s2s-train train --config ${r.configFile}\n`);
  },
};
