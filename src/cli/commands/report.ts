// `s2s-train report <run> [--output FILE]`
import type { CommandModule } from "yargs";
import { runReport } from "../../report/report.js";

interface ReportArgs {
  run: string;
  output?: string;
  predictions: number;
}

export const reportCommand: CommandModule<object, ReportArgs> = {
  command: "report <run>",
  describe: "Write report.html for a run folder: curves, metrics, predictions, config (self-contained)",
  builder: (y) =>
    y
      .positional("run", { type: "string", demandOption: true, describe: "Run folder (runs/<name>)" })
      .option("output", { type: "string", describe: "Where to write the report (default <run>/report.html)" })
      .option("predictions", { type: "number", default: 20, describe: "Predictions shown beside their references" }),
  handler: (args) => {
    const { file, charts } = runReport({ run: args.run, output: args.output, predictionSample: args.predictions });
    process.stdout.write(`wrote ${file} (${charts.length} chart${charts.length === 1 ? "" : "s"})\n`);
  },
};
