// One OpenAI-style completion on the served model: token-id prompts in (one or a batch), n
// choices per prompt, stop sequences applied to the streamed text, and either the whole result or
// text deltas as they come. The model runs one request at a time (GenerationQueue); the request's
// AbortSignal (client gone) stops generation after the current step.
import type { GenerateOptions, GeneratedSequence, TokenEvent } from "../generate/options.js";
import type { Model } from "../models/model.js";
import { toApiError } from "./api-error.js";
import type { GenerationQueue } from "./generation-queue.js";
import type { EventStream, ServeContext } from "./http-context.js";
import { cutAtStop, StopMatcher } from "./stop-sequences.js";

export type FinishReason = "stop" | "length";

export interface CompletionJob {
  /** Token ids of each prompt. */
  prompts: number[][];
  /** Settings of model.generate (signal and onToken are set here). */
  options: GenerateOptions;
  /** Choices per prompt. */
  n: number;
  stops: string[];
  /** Report each token's log-prob and text. */
  logprobs?: boolean;
  /** Streaming: called with each choice's new text as soon as it is final (stop sequences held back). */
  onText?: (choice: number, text: string) => void;
  signal: AbortSignal;
}

export interface TokenLogprob {
  /** The text the token added (incremental decoding: a leading space is part of it, as in OpenAI's tokens). */
  token: string;
  logprob: number;
}

export interface CompletionChoice {
  /** prompt index * n + k, as OpenAI numbers choices. */
  index: number;
  text: string;
  finishReason: FinishReason;
  /** The generated tokens the text comes from (up to the stop sequence when one ended it). */
  tokenIds: number[];
  /** Per token: log-prob under the processed distribution (what transformers' compute_transition_scores gives). */
  logprobs: TokenLogprob[];
}

export interface CompletionOutcome {
  choices: CompletionChoice[];
  promptTokens: number;
  completionTokens: number;
  /** The client went away (the signal fired): nothing is to be sent. */
  aborted: boolean;
}

interface ChoiceState {
  matcher: StopMatcher;
  tokens: number;
  /** Tokens seen when the stop sequence completed. */
  tokensAtStop?: number;
  released: string;
  /** Each token's text, when log-probs are asked for. */
  pieces: string[];
}

export async function runCompletion(model: Model, queue: GenerationQueue, job: CompletionJob): Promise<CompletionOutcome> {
  const total = job.prompts.length * job.n;
  const states: ChoiceState[] = Array.from({ length: total }, () => ({ matcher: new StopMatcher(job.stops), tokens: 0, released: "", pieces: [] as string[] }));
  const allStopped = new AbortController();
  const signal = AbortSignal.any([job.signal, allStopped.signal]);
  const follow = job.onText !== undefined || job.stops.length > 0 || job.logprobs === true;
  let stoppedCount = 0;

  const onToken = (e: TokenEvent) => {
    const st = states[e.sequence]!;
    if (st.matcher.stopped) return;
    st.tokens++;
    if (job.logprobs) st.pieces.push(e.text);
    const text = st.matcher.push(e.text);
    if (text) {
      st.released += text;
      job.onText?.(e.sequence, text);
    }
    if (st.matcher.stopped) {
      st.tokensAtStop = st.tokens;
      if (++stoppedCount === total) allStopped.abort();  // every choice is done: stop decoding
    }
  };

  const result = await queue.run(() => model.generate(job.prompts, {
    ...job.options,
    numBeams: 1,
    numReturnSequences: job.n,
    signal,
    ...(follow ? { onToken } : {}),
  }), job.signal);

  const choices = result.sequences.map((s: GeneratedSequence, index): CompletionChoice => {
    const st = states[index]!;
    let text: string;
    let finishReason: FinishReason;
    let kept = s.tokenIds.length;
    if (st.matcher.stopped) {
      text = st.matcher.output;
      finishReason = "stop";
      kept = st.tokensAtStop!;
    } else {
      const whole = cutAtStop(s.text ?? "", job.stops);
      text = whole.text;
      finishReason = whole.stopped || s.finishReason === "eos" ? "stop" : "length";
      // Streaming: whatever the final decode adds to what was released (a held-back tail).
      if (job.onText && text.startsWith(st.released) && text.length > st.released.length) {
        job.onText(index, text.slice(st.released.length));
      }
    }
    const tokenIds = s.tokenIds.slice(0, kept);
    const logprobs = job.logprobs ? tokenIds.map((_, i) => ({ token: st.pieces[i] ?? "", logprob: s.tokenLogprobs[i]! })) : [];
    return { index, text, finishReason, tokenIds, logprobs };
  });
  return {
    choices,
    promptTokens: result.usage.promptTokens,
    completionTokens: choices.reduce((n, c) => n + c.tokenIds.length, 0),
    aborted: job.signal.aborted,
  };
}

/** OpenAI's usage object. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/**
 * runCompletion for one HTTP request, with what both endpoints do around it: a failure after the
 * stream has started ends the stream with the error, and a client that went away is logged.
 * Undefined when the response is already finished (either case); else the outcome and its usage.
 */
export async function completeRequest(
  ctx: ServeContext, id: string, stream: EventStream | undefined, job: CompletionJob,
): Promise<{ outcome: CompletionOutcome; usage: Usage } | undefined> {
  let outcome: CompletionOutcome;
  try {
    outcome = await runCompletion(ctx.model, ctx.queue, job);
  } catch (e) {
    if (stream?.isStarted) {
      stream.fail(toApiError(e));
      return undefined;
    }
    throw e;
  }
  if (outcome.aborted) {
    ctx.log(`generation ${id} cancelled after ${outcome.completionTokens} tokens: the client disconnected`);
    return undefined;
  }
  const usage = {
    prompt_tokens: outcome.promptTokens,
    completion_tokens: outcome.completionTokens,
    total_tokens: outcome.promptTokens + outcome.completionTokens,
  };
  return { outcome, usage };
}
