// The options of model.generate / model.generateStream and what they return: one zod schema is
// the single definition (types by z.infer). Names are transformers' GenerationConfig fields in
// camelCase, with transformers' meaning; any option left out comes from the model folder's
// generation_config.json, then from transformers' GenerationConfig defaults.
import { z } from "zod";

const tokenId = z.number().int().nonnegative();

/** Sampling/search options, each with transformers' meaning (GenerationConfig, same defaults). */
export const generateOptionsSchema = z.strictObject({
  // ---- length ----
  maxNewTokens: z.number().int().positive().optional()
    .describe("Tokens to generate at most, prompt excluded; takes precedence over maxLength"),
  maxLength: z.number().int().positive().optional()
    .describe("Total length at most: prompt (padded batch length) + new tokens for decoder-only models, decoder start token + new tokens for T5. Default 20 new tokens"),
  minLength: z.number().int().nonnegative().optional()
    .describe("EOS is banned while the total length (as maxLength counts it) is below this"),
  minNewTokens: z.number().int().nonnegative().optional()
    .describe("EOS is banned until this many tokens were generated; takes precedence over minLength"),
  // ---- strategy ----
  doSample: z.boolean().optional().describe("Sample from the processed distribution instead of taking the best token"),
  temperature: z.number().nonnegative().optional()
    .describe("Sampling: logits are divided by this; 0 means greedy (doSample off), as transformers"),
  topK: z.number().int().nonnegative().optional().describe("Sampling: keep the k most likely tokens (0 = off; default 50)"),
  topP: z.number().gt(0).max(1).optional().describe("Sampling: keep the smallest set of tokens whose probability adds up to topP (1 = off)"),
  seed: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional()
    .describe("Seed of the sampler's random numbers: the same seed, options and inputs give the same tokens. Default: random"),
  numBeams: z.number().int().positive().optional().describe("Beam search with this many beams (1 = greedy or sampling)"),
  lengthPenalty: z.number().finite().optional()
    .describe("Beam search: a finished beam's score is sum(logprobs) / (generated length ** lengthPenalty)"),
  earlyStopping: z.union([z.boolean(), z.literal("never")]).optional()
    .describe("Beam search: true stops when numBeams hypotheses are finished; false stops when no running beam can plausibly do better; 'never' only when none can"),
  numReturnSequences: z.number().int().positive().optional()
    .describe("Sequences returned per input (<= numBeams with beam search; sampling draws this many; greedy needs 1)"),
  // ---- logits processors (transformers' order: repetition, n-gram, bad words, min length, then temperature, top-k, top-p) ----
  repetitionPenalty: z.number().positive().optional()
    .describe("Tokens already in the sequence (prompt included) get logit / p when positive, logit * p when negative"),
  noRepeatNgramSize: z.number().int().nonnegative().optional()
    .describe("No n-gram of this size occurs twice in the sequence (prompt included); 0 = off"),
  badWordsIds: z.array(z.array(tokenId).min(1)).optional()
    .describe("Token sequences that must not be generated (the last token is banned where the others precede it)"),
  // ---- special tokens ----
  eosTokenId: z.union([tokenId, z.array(tokenId)]).nullable().optional()
    .describe("One or several end-of-sequence ids (null: none, generate to the length limit)"),
  padTokenId: tokenId.optional().describe("Fills finished rows and left padding (default: the first EOS id)"),
  decoderStartTokenId: tokenId.optional().describe("T5: the decoder's first token (default from the config)"),
  // ---- text ----
  addSpecialTokens: z.boolean().optional().describe("When a prompt is text: let the tokenizer add its special tokens (default true)"),
  skipSpecialTokens: z.boolean().optional().describe("Decoded text leaves special tokens out (default true)"),
  // ---- constraint ----
  jsonSchema: z.record(z.string(), z.unknown()).optional()
    .describe("Constrained decoding: every step allows only the tokens that keep the output a prefix of compact JSON matching this JSON schema, and the end of sequence only once it is complete (the supported subset is in the README; {type: \"object\"} is any JSON object). Greedy search or sampling only; needs the folder's tokenizer.json (byte-level or SentencePiece-style) and an EOS token"),
  // ---- control ----
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, { error: "expected an AbortSignal" }).optional()
    .describe("Aborting stops generation after the current step; the tokens so far come back with finishReason 'aborted'"),
});

/** Options of model.generate(); every field is optional (defaults: generation_config.json). */
export type GenerateOptions = z.input<typeof generateOptionsSchema> & {
  /**
   * Streaming callback: called once per generated token of every running sequence, in order,
   * on the JS thread (not with beam search, where tokens are not final until the end).
   */
  onToken?: (event: TokenEvent) => void;
};

/** Options of model.generateStream() (one prompt, one sequence, no beam search). */
export type GenerateStreamOptions = Omit<GenerateOptions, "onToken" | "numBeams" | "numReturnSequences">;

/** A prompt: text (tokenized with the folder's tokenizer.json) or token ids. */
export type GenerateInput = string | readonly number[];

/** Why a sequence stopped. */
export type FinishReason = "eos" | "length" | "aborted";

/** One streamed token. */
export interface TokenEvent {
  /** Index of the returned sequence this token extends (input index * numReturnSequences + k). */
  sequence: number;
  tokenId: number;
  /**
   * The text this token adds (incremental detokenization: a token that ends inside a multi-byte
   * character adds "" and the next one carries the whole character). "" without a tokenizer.
   */
  text: string;
}

/** One generated sequence. */
export interface GeneratedSequence {
  /** Index into the inputs this sequence continues. */
  inputIndex: number;
  /** The new tokens (prompt excluded), ending with the EOS token when it stopped on one. */
  tokenIds: number[];
  /** tokenIds decoded (skipSpecialTokens: true by default); undefined when the folder has no tokenizer. */
  text: string | undefined;
  /**
   * Beam search: transformers' sequences_scores (sum of the processed log-probs of the tokens,
   * divided by generated length ** lengthPenalty). Otherwise: the sum of the log-probs of the
   * chosen tokens under the processed distribution (compute_transition_scores with
   * normalize_logits=True, summed).
   */
  score: number;
  /** Per token: its log-prob under the processed distribution at that step (beam search: the transition score). */
  tokenLogprobs: number[];
  finishReason: FinishReason;
}

/** What model.generate() returns. */
export interface GenerateResult {
  /** inputs.length * numReturnSequences sequences, grouped by input (beam search: best first). */
  sequences: GeneratedSequence[];
  /** The prompt's token ids per input (after tokenization; no padding). */
  promptTokenIds: number[][];
  usage: {
    /** Prompt tokens over all inputs (no padding). */
    promptTokens: number;
    /** Generated tokens over all returned sequences. */
    completionTokens: number;
  };
  timings: {
    /** From the call to the first token's logits (encoder + prompt prefill). */
    prefillMs: number;
    /** From the first token to the end. */
    decodeMs: number;
    /** Decoding steps run (one token per running row each). */
    steps: number;
    /**
     * Of them, steps replayed from a recorded one (a CUDA graph: one launch instead of an op
     * at a time); 0 on the CPU and for T5.
     */
    replayedSteps: number;
  };
}

/** One chunk of model.generateStream(). */
export interface StreamChunk {
  tokenId: number;
  /** The text this token adds (see TokenEvent.text). */
  text: string;
}

/**
 * What model.generateStream() returns: iterate it for the tokens as they come; `result` settles
 * when generation ends (EOS, length, abort or error) with the whole sequence. Breaking out of the
 * loop early aborts generation.
 */
export interface GenerationStream extends AsyncIterable<StreamChunk> {
  readonly result: Promise<GenerateResult>;
}

// The methods on Model (src/models/model.ts):
//   model.generate(inputs: GenerateInput | readonly GenerateInput[], options?: GenerateOptions): Promise<GenerateResult>
//   model.generateStream(prompt: GenerateInput, options?: GenerateStreamOptions): GenerationStream
// A single token-id array is one prompt; an array of strings / token-id arrays is a batch
// (decoder-only models: left-padded to the longest, positions from the attention mask, as
// transformers does; T5: right-padded encoder inputs).
