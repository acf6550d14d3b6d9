// `s2s-train build-native [--cuda on|auto|off] [--jobs N] [--dry-run]`
import type { CommandModule } from "yargs";
import { runBuildNative, type CudaChoice } from "../../build-native.js";

interface BuildNativeArgs {
  cuda?: string;
  jobs?: string;
  "dry-run": boolean;
}

const cudaChoices: CudaChoice[] = ["on", "auto", "off"];

export const buildNativeCommand: CommandModule<object, BuildNativeArgs> = {
  command: "build-native",
  describe: "Build the native addon from this package's sources into <package>/build/Release (e.g. with the CUDA backend)",
  builder: (y) =>
    y
      .option("cuda", {
        type: "string",
        describe: "CUDA backend: on (required), auto (when nvcc and cuBLASLt are found), off; default: $S2S_CUDA, else auto",
      })
      .option("jobs", { type: "string", describe: "Parallel compile jobs (default: cores, at most 4)" })
      .option("dry-run", { type: "boolean", default: false, describe: "Print the build commands and their folder; run nothing" })
      .check((args) => {
        if (args.cuda !== undefined && !cudaChoices.includes(String(args.cuda).toLowerCase() as CudaChoice)) {
          throw new Error(`--cuda: expected on, auto or off, got '${args.cuda}'`);
        }
        if (args.jobs !== undefined && !(/^\d+$/.test(args.jobs) && Number(args.jobs) >= 1)) {
          throw new Error(`--jobs: expected a whole number >= 1, got '${args.jobs}'`);
        }
        return true;
      }) as never,
  handler: async (args) => {
    await runBuildNative({
      dryRun: args["dry-run"],
      ...(args.cuda !== undefined ? { cuda: args.cuda.toLowerCase() as CudaChoice } : {}),
      ...(args.jobs !== undefined ? { jobs: Number(args.jobs) } : {}),
    });
  },
};
