#!/usr/bin/env node
// The s2s-train command line. One command per file under commands/; handlers only call run*()
// functions that tests call directly. The process exits here and nowhere else.
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { closest } from "../config/closest.js";
import { doctorCommand } from "./commands/doctor.js";
import { initCommand } from "./commands/init.js";
import { inspectDataCommand } from "./commands/inspect-data.js";
import { trainCommand } from "./commands/train.js";
import { evalCommand } from "./commands/eval.js";
import { reportCommand } from "./commands/report.js";
import { synthCommand } from "./commands/synth.js";
import { generateCommand } from "./commands/generate.js";
import { serveCommand } from "./commands/serve.js";
import { buildNativeCommand } from "./commands/build-native.js";

// Messages from the loader already start with "s2s-train: ".
function withoutPrefix(message: string): string {
  return message.replace(/^s2s-train: /, "");
}

/** Thrown from .fail() once the failure is reported, so yargs runs no handler after a usage error. */
class ReportedFailure extends Error {}

/** "Unknown argument: lrr" gets the closest option this command has. */
function withSuggestion(message: string, options: string[]): string {
  const m = /^Unknown arguments?: (.+)$/.exec(message);
  if (!m) return message;
  const hints = m[1]!.split(", ").map((arg) => {
    const near = closest(arg, options);
    return near ? `--${arg} (did you mean --${near}?)` : `--${arg}`;
  });
  return `Unknown argument${hints.length > 1 ? "s" : ""}: ${hints.join(", ")}`;
}

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  let reported = false;
  try {
    await yargs(argv)
      .scriptName("s2s-train")
      .command(doctorCommand)
      .command(initCommand)
      .command(trainCommand)
      .command(evalCommand)
      .command(inspectDataCommand)
      .command(reportCommand)
      .command(synthCommand)
      .command(generateCommand)
      .command(serveCommand)
      .command(buildNativeCommand)
      .strict()
      .strictCommands()
      .demandCommand(1, "Name a command; see --help.")
      .recommendCommands()
      .help()
      .fail((message, error, y) => {
        exitCode = 1;
        if (error) {
          // A run stopped by a signal exits as the shell expects (130 for SIGINT, 143 for SIGTERM).
          const status = (error as { exitCode?: unknown }).exitCode;
          if (typeof status === "number") exitCode = status;
          const code = (error as { code?: unknown }).code;
          process.stderr.write(`s2s-train: ${withoutPrefix(error.message)}${typeof code === "string" ? ` [${code}]` : ""}\n`);
        } else {
          const help = String(y.help());
          const options = [...help.matchAll(/--([a-z][\w-]*)/g)].map((m) => m[1]!);  // this command's options
          process.stderr.write(`${help}\n\n${withSuggestion(message, options)}\n`);
        }
        reported = true;
        throw new ReportedFailure();
      })
      .parseAsync();
  } catch (e) {
    // An async handler's rejection reaches .fail() too, but parseAsync then rejects with the
    // original error: it was reported already.
    if (!(e instanceof ReportedFailure) && !reported) throw e;
  }
  return exitCode;
}

main(hideBin(process.argv)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`s2s-train: ${withoutPrefix(e instanceof Error ? e.message : String(e))}\n`);
    process.exitCode = 1;
  },
);
