// `s2s-train train` as a function: resolve the config from file and command line, train with the
// console on, stop cleanly on SIGINT/SIGTERM. The CLI handler only calls this.
import type { TrainConfig } from "../config/schema.js";
import path from "node:path";
import { bundledConfigFile, DEFAULT_EXAMPLE } from "../config/bundled.js";
import { ConfigError, resolveConfig } from "../config/load.js";
import { exitStatusFor, stopOnSignals, type StopSignal } from "./stop-signals.js";
import { train, type TrainOptions, type TrainResult } from "./trainer.js";

export interface RunTrainOptions {
  /** YAML config file. */
  config?: string;
  /** A config bundled with the package (configs/<name>.yaml); with neither, "default". */
  example?: string;
  /** Flag values by dotted key ({"train.lr": 3e-5}). */
  flags?: Record<string, unknown>;
  /** Dotted overrides ("train.lr=3e-5"). */
  overrides?: string[];
  /** true or "": the latest checkpoint; a path: that checkpoint. */
  resume?: boolean | string;
  overwrite?: boolean;
  /** Extra train() options (the data, a generation-metrics hook, events). */
  train?: Partial<Omit<TrainOptions, "config" | "resume" | "overwrite" | "signal">>;
}

/** A run stopped by a signal, after saving its checkpoint; `exitCode` is the shell's 128 + signal. */
export class InterruptedRunError extends Error {
  readonly code = "S2S_INTERRUPTED";
  constructor(readonly signal: StopSignal, readonly result: TrainResult, readonly exitCode: number) {
    super(
      `stopped by ${signal} at step ${result.globalStep}; ` +
        (result.lastCheckpoint ? `saved ${result.lastCheckpoint}; continue with the same command and --resume` : "nothing was saved (no step had been taken)"),
    );
    this.name = "InterruptedRunError";
  }
}

export function resolveTrainConfig(o: Pick<RunTrainOptions, "config" | "example" | "flags" | "overrides">): TrainConfig {
  if (o.config !== undefined && o.example !== undefined) {
    throw new ConfigError([`--config ${o.config} and --example ${o.example}: give one of them`]);
  }
  const flags = { ...o.flags };
  const given = (key: string) => flags[key] !== undefined || (o.overrides ?? []).some((t) => t.startsWith(`${key}=`));
  // With nothing to say what to train, the bundled default; a model or data named on the command
  // line means the user's own run (it must never inherit the example's from_scratch).
  const ownRun = o.config !== undefined || given("model.path") || given("data.train_file");
  const example = o.example ?? (ownRun ? undefined : DEFAULT_EXAMPLE);
  // A bundled config's run belongs to the user: runs/<name> under the working folder.
  const outputGiven = given("output.dir");
  if (example !== undefined && !outputGiven) flags["output.dir"] = path.join("runs", example);
  const file = o.config ?? (example !== undefined ? bundledConfigFile(example) : undefined);
  return resolveConfig({
    ...(file !== undefined ? { file } : {}),
    flags,
    ...(o.overrides ? { overrides: o.overrides } : {}),
  });
}

export async function runTrain(o: RunTrainOptions): Promise<TrainResult> {
  const config = resolveTrainConfig(o);
  const controller = new AbortController();
  const removeHandlers = stopOnSignals(controller);
  try {
    const resume = o.resume === "" ? true : o.resume;
    const result = await train({
      console: true,
      ...o.train,
      config,
      ...(resume !== undefined && resume !== false ? { resume } : {}),
      overwrite: o.overwrite ?? false,
      signal: controller.signal,
    });
    if (result.status === "interrupted") {
      const signal = controller.signal.reason as StopSignal;
      throw new InterruptedRunError(signal, result, exitStatusFor(signal));
    }
    return result;
  } finally {
    removeHandlers();
  }
}
