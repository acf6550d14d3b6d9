// `s2s-train generate --interactive`: a prompt-by-prompt session. Each line is a prompt; its tokens
// are printed as they come (greedy or sampling; beam search prints when done). Ctrl-C cancels the
// generation under way (at an empty prompt it says how to quit; twice quits); Ctrl-D quits.
import type { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import type { Model } from "../models/model.js";
import type { GenerateOptions } from "./options.js";

export interface InteractiveSessionOptions {
  model: Model;
  /** The generation settings of every prompt. */
  options: GenerateOptions;
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** Where SIGINT arrives when the input is not a terminal (the process). */
  signals?: EventEmitter;
}

/** Whether these options stream: one greedy or sampled sequence. */
function streams(model: Model, options: GenerateOptions): boolean {
  const beams = options.numBeams ?? model.folder.generationConfig.num_beams;
  const sequences = options.numReturnSequences ?? model.folder.generationConfig.num_return_sequences;
  return beams === 1 && sequences === 1;
}

export async function runInteractiveSession(session: InteractiveSessionOptions): Promise<void> {
  const { model, options, output } = session;
  const terminal = (session.input as { isTTY?: boolean }).isTTY === true;
  const rl = createInterface({ input: session.input, output, prompt: "> ", terminal });
  let current: AbortController | undefined;
  let interruptedIdle = false;

  const interrupt = () => {
    if (current) {
      current.abort();
      return;
    }
    if (interruptedIdle || !terminal) {
      rl.close();
      return;
    }
    interruptedIdle = true;
    rl.write(null, { ctrl: true, name: "u" });  // clear the line typed so far
    output.write("\n(Ctrl-C again or Ctrl-D quits)\n");
    rl.prompt();
  };
  rl.on("SIGINT", interrupt);
  session.signals?.on("SIGINT", interrupt);

  output.write(`${model.folder.dir}: type a prompt and press Enter; Ctrl-C cancels a generation, Ctrl-D quits.\n`);
  rl.prompt();
  try {
    for await (const line of rl) {
      interruptedIdle = false;
      if (line.trim() === "") {
        rl.prompt();
        continue;
      }
      current = new AbortController();
      try {
        await generateOne(model, line, { ...options, signal: current.signal }, output);
      } catch (e) {
        output.write(`\nerror: ${(e as Error).message}\n`);
      } finally {
        current = undefined;
      }
      rl.prompt();
    }
  } finally {
    session.signals?.off("SIGINT", interrupt);
    rl.close();
    output.write("\n");
  }
}

async function generateOne(model: Model, prompt: string, options: GenerateOptions, output: NodeJS.WritableStream): Promise<void> {
  const started = performance.now();
  let result;
  if (streams(model, options)) {
    const { numBeams: _b, numReturnSequences: _n, ...rest } = options;
    const stream = model.generateStream(prompt, rest);
    for await (const chunk of stream) output.write(chunk.text);
    result = await stream.result;
  } else {
    result = await model.generate(prompt, options);
    result.sequences.forEach((s, k) => {
      output.write(`${result!.sequences.length > 1 ? `[${k + 1}] ` : ""}${s.text ?? s.tokenIds.join(" ")}\n`);
    });
  }
  const seconds = (performance.now() - started) / 1000;
  const n = result.usage.completionTokens;
  const finish = result.sequences.some((s) => s.finishReason === "aborted") ? ", cancelled" : "";
  output.write(`\n(${n} tokens, ${(n / Math.max(seconds, 1e-9)).toFixed(1)} tok/s${finish})\n`);
}
