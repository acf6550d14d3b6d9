// model.generate and model.generateStream: inputs to token ids (the folder's tokenizer for
// text), the resolved settings, the native call (token streaming, AbortSignal -> abortGenerate),
// and the results decoded back to text. No numerics here: decoding runs natively.
import { withCallerStack, type NativeGenerationConfig, type NativeModel } from "../../bindings/native.js";
import { JsonConstraint } from "../constrain/json-constraint.js";
import { compileJsonSchema } from "../constrain/json-schema.js";
import { loadTokenVocabulary } from "../constrain/token-vocabulary.js";
import type { ModelFolder } from "../models/model-folder.js";
import type { Tokenizer } from "../models/tokenizer.js";
import { decodeTokens, StreamDetokenizer } from "./detokenize.js";
import type {
  GenerateInput, GenerateOptions, GenerateResult, GenerateStreamOptions, GenerationStream, StreamChunk,
} from "./options.js";
import { checkGenerateOptions, GenerateOptionsError, resolveGenerationConfig } from "./resolve.js";

/** What generation needs from a loaded Model. */
export interface GenerateContext {
  native: NativeModel;
  folder: ModelFolder;
  /** The folder's tokenizer, loaded on first use; undefined without tokenizer.json. */
  tokenizer(): Tokenizer | undefined;
}

function isTokenIds(x: unknown): x is readonly number[] {
  return Array.isArray(x) && x.every((t) => typeof t === "number");
}

/** One prompt (text or token ids) or a batch of them. */
function listInputs(inputs: GenerateInput | readonly GenerateInput[]): GenerateInput[] {
  if (typeof inputs === "string" || isTokenIds(inputs)) return [inputs as GenerateInput];
  if (!Array.isArray(inputs) || inputs.length === 0) {
    throw new GenerateOptionsError("generate: expected a prompt (text or token ids) or a non-empty array of them");
  }
  inputs.forEach((x, i) => {
    if (typeof x !== "string" && !isTokenIds(x)) {
      throw new GenerateOptionsError(`generate: inputs[${i}]: expected text or an array of token ids`);
    }
  });
  return [...(inputs as GenerateInput[])];
}

function tokenize(ctx: GenerateContext, inputs: GenerateInput[], addSpecialTokens: boolean): number[][] {
  return inputs.map((x, i) => {
    if (typeof x !== "string") {
      x.forEach((t, j) => {
        if (!Number.isInteger(t) || t < 0) {
          throw new GenerateOptionsError(`generate: inputs[${i}][${j}]: expected a token id (an integer >= 0), got ${t}`);
        }
      });
      return [...x];
    }
    const tok = ctx.tokenizer();
    if (!tok) {
      throw new GenerateOptionsError(`generate: ${ctx.folder.dir} has no tokenizer.json, so prompts must be token ids, not text`);
    }
    return tok.encode(x, { add_special_tokens: addSpecialTokens }).ids;
  });
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("generation was aborted", "AbortError");
}

/** The logits mask for options.jsonSchema; errors name the option and what is wrong. */
function jsonConstraint(ctx: GenerateContext, schema: Record<string, unknown>, config: NativeGenerationConfig): JsonConstraint {
  let root;
  try {
    root = compileJsonSchema(schema);
  } catch (e) {
    throw new GenerateOptionsError(`generate options: jsonSchema: ${(e as Error).message}`);
  }
  if ((config.numBeams ?? 1) > 1) {
    throw new GenerateOptionsError("generate options: jsonSchema: constrained decoding needs greedy search or sampling (numBeams 1); beam search with a constraint is not supported");
  }
  if (!config.eosTokenIds || config.eosTokenIds.length === 0) {
    throw new GenerateOptionsError("generate options: jsonSchema: constrained decoding needs an end-of-sequence token (eosTokenId) to end the output once the JSON is complete");
  }
  if (!ctx.tokenizer()) {
    throw new GenerateOptionsError(`generate options: jsonSchema: ${ctx.folder.dir} has no tokenizer.json, which constrained decoding needs to know each token's text`);
  }
  let vocabulary;
  try {
    vocabulary = loadTokenVocabulary(ctx.folder.dir);
  } catch (e) {
    throw new GenerateOptionsError(`generate options: jsonSchema: ${(e as Error).message}`);
  }
  return new JsonConstraint(root, vocabulary, config.eosTokenIds);
}

/** model.generate(inputs, options). */
export async function runGenerate(
  ctx: GenerateContext,
  inputs: GenerateInput | readonly GenerateInput[],
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  const checked = checkGenerateOptions(options);
  const prompts = tokenize(ctx, listInputs(inputs), checked.addSpecialTokens ?? true);
  const config = resolveGenerationConfig(checked, ctx.folder.generationConfig, ctx.folder.config);
  const skipSpecialTokens = checked.skipSpecialTokens ?? true;
  const onToken = options.onToken;
  if (onToken && (config.numBeams ?? 1) > 1) {
    throw new GenerateOptionsError("generate options: onToken: streaming needs greedy search or sampling (numBeams 1); beam search tokens are final only at the end");
  }
  const tokenizer = ctx.tokenizer();
  let onTokens: ((pairs: Int32Array) => void) | undefined;
  if (onToken) {
    const streams = new Map<number, StreamDetokenizer>();
    onTokens = (pairs) => {
      for (let i = 0; i < pairs.length; i += 2) {
        const sequence = pairs[i]!, tokenId = pairs[i + 1]!;
        let d = streams.get(sequence);
        if (!d) streams.set(sequence, (d = new StreamDetokenizer(tokenizer, skipSpecialTokens)));
        onToken({ sequence, tokenId, text: d.push(tokenId) });
      }
    };
  }
  const constraint = checked.jsonSchema ? jsonConstraint(ctx, checked.jsonSchema, config) : undefined;
  const signal = checked.signal;
  if (signal?.aborted) throw abortReason(signal);
  const abort = () => ctx.native.abortGenerate();
  signal?.addEventListener("abort", abort, { once: true });
  let raw;
  try {
    raw = await withCallerStack(() =>
      ctx.native.generate(prompts.map((p) => Int32Array.from(p)), config, onTokens, constraint?.mask));
  } finally {
    signal?.removeEventListener("abort", abort);
  }
  const sequences = raw.sequences.map((s) => {
    const tokenIds = Array.from(s.tokenIds);
    return {
      inputIndex: s.inputIndex,
      tokenIds,
      text: tokenizer ? decodeTokens(tokenizer, tokenIds, skipSpecialTokens) : undefined,
      score: s.score,
      tokenLogprobs: Array.from(s.tokenLogprobs),
      finishReason: s.finishReason,
    };
  });
  return {
    sequences,
    promptTokenIds: prompts,
    usage: {
      promptTokens: prompts.reduce((n, p) => n + p.length, 0),
      completionTokens: sequences.reduce((n, s) => n + s.tokenIds.length, 0),
    },
    timings: {
      prefillMs: raw.prefillMs,
      decodeMs: raw.decodeMs,
      steps: raw.steps,
      replayedSteps: raw.replayedSteps,
    },
  };
}

/** model.generateStream(prompt, options): runGenerate with onToken feeding an async iterator. */
export function runGenerateStream(
  ctx: GenerateContext,
  prompt: GenerateInput,
  options: GenerateStreamOptions = {},
): GenerationStream {
  if (typeof prompt !== "string" && !isTokenIds(prompt)) {
    throw new GenerateOptionsError("generateStream: expected one prompt (text or token ids)");
  }
  const { numBeams, numReturnSequences, onToken, ...rest } =
    options as GenerateStreamOptions & { numBeams?: unknown; numReturnSequences?: unknown; onToken?: unknown };
  if (numBeams !== undefined || numReturnSequences !== undefined || onToken !== undefined) {
    throw new GenerateOptionsError("generateStream options: numBeams, numReturnSequences and onToken are not options of a stream (one sequence, greedy or sampling); use generate()");
  }
  const controller = new AbortController();
  const userSignal = rest.signal;
  if (userSignal?.aborted) controller.abort(userSignal.reason);
  const forward = () => controller.abort(userSignal?.reason);
  userSignal?.addEventListener("abort", forward, { once: true });

  const queue: StreamChunk[] = [];
  let done = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const result = runGenerate(ctx, prompt, {
    ...rest,
    numBeams: 1,
    numReturnSequences: 1,
    signal: controller.signal,
    onToken: (e) => {
      queue.push({ tokenId: e.tokenId, text: e.text });
      notify();
    },
  });
  result.then(
    () => { done = true; notify(); },
    (error: unknown) => { failure = { error }; done = true; notify(); },
  ).finally(() => userSignal?.removeEventListener("abort", forward));

  return {
    result,
    async *[Symbol.asyncIterator]() {
      try {
        for (;;) {
          if (queue.length > 0) {
            yield queue.shift()!;
            continue;
          }
          if (failure) throw failure.error;
          if (done) return;
          await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        // The consumer stopped early (break / return / throw): stop generating.
        if (!done) controller.abort();
      }
    },
  };
}
