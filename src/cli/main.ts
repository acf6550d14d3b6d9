#!/usr/bin/env node
// The s2s-train command line. One command per file under commands/; handlers only call run*()
// functions that tests call directly. The process exits here and nowhere else.
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { doctorCommand } from "./commands/doctor.js";
import { inspectDataCommand } from "./commands/inspect-data.js";

// Messages from the loader already start with "s2s-train: ".
function withoutPrefix(message: string): string {
  return message.replace(/^s2s-train: /, "");
}

export async function main(argv: string[]): Promise<number> {
  let reported = false;
  try {
    await yargs(argv)
      .scriptName("s2s-train")
      .command(doctorCommand)
      .command(inspectDataCommand)
      .strict()
      .strictCommands()
      .demandCommand(1, "Name a command; see --help.")
      .recommendCommands()
      .help()
      .fail((message, error, y) => {
        if (!reported) {
          if (error) {
            const code = (error as { code?: unknown }).code;
            process.stderr.write(`s2s-train: ${withoutPrefix(error.message)}${typeof code === "string" ? ` [${code}]` : ""}\n`);
          } else {
            process.stderr.write(`${y.help()}\n\n${message}\n`);
          }
        }
        reported = true;
        // Throwing stops yargs: no handler runs after a failed check, and an async handler's
        // rejection (which also comes here) is not reported a second time below.
        throw error ?? new Error(message);
      })
      .parseAsync();
  } catch (e) {
    if (!reported) throw e;
    return 1;
  }
  return 0;
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
