// POST /v1/completions: text (or token-id) prompts, one or a batch, continued by the model.
import type { ServerResponse } from "node:http";
import { z } from "zod";
import { decodeTokens } from "../generate/detokenize.js";
import { badRequest, parseRequest } from "./api-error.js";
import { completeRequest, type CompletionChoice } from "./completion-engine.js";
import { checkModelName, completionId, EventStream, nowSeconds, sendJson, type ServeContext } from "./http-context.js";
import { planSampling, samplingFields } from "./sampling-params.js";

const tokenId = z.number().int().nonnegative();

const completionRequestSchema = z.looseObject({
  model: z.string().min(1),
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1).max(64),
    z.array(tokenId).min(1),
    z.array(z.array(tokenId).min(1)).min(1).max(64),
  ], { error: "expected a string, an array of strings, an array of token ids or an array of such arrays" }),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
  best_of: z.number().int().min(1).nullish(),
  suffix: z.string().nullish(),
  ...samplingFields,
});

type CompletionRequest = z.infer<typeof completionRequestSchema>;

/** OpenAI's default max_tokens for /v1/completions. */
const DEFAULT_MAX_TOKENS = 16;

function promptList(prompt: CompletionRequest["prompt"]): (string | number[])[] {
  if (typeof prompt === "string") return [prompt];
  if (prompt.every((p) => typeof p === "number")) return [prompt as number[]];
  return prompt as (string | number[])[];
}

/** Completions' logprobs object: the chosen tokens with their log-probs and text offsets. */
function logprobsOf(choice: CompletionChoice, offset: number) {
  const textOffset: number[] = [];
  let at = offset;
  for (const t of choice.logprobs) {
    textOffset.push(at);
    at += t.token.length;
  }
  return {
    tokens: choice.logprobs.map((t) => t.token),
    token_logprobs: choice.logprobs.map((t) => t.logprob),
    top_logprobs: null,
    text_offset: textOffset,
  };
}

export async function handleCompletions(ctx: ServeContext, body: unknown, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const req = parseRequest(completionRequestSchema, body);
  checkModelName(ctx, req.model);
  if (req.suffix) throw badRequest("suffix (fill in the middle) is not supported", "suffix", "unsupported_parameter");
  if (req.best_of != null && req.best_of !== (req.n ?? 1)) {
    throw badRequest("best_of is not supported (only best_of = n)", "best_of", "unsupported_parameter");
  }
  if (req.logprobs != null && req.logprobs > 0) {
    throw badRequest("logprobs > 0 is not supported: the engine reports the chosen token's log-prob only; ask for logprobs: 0", "logprobs", "unsupported_parameter");
  }
  const wantLogprobs = req.logprobs === 0;
  if (wantLogprobs && req.stream) throw badRequest("logprobs with stream: true is not supported", "logprobs", "unsupported_parameter");
  if (wantLogprobs && req.echo) throw badRequest("logprobs with echo is not supported (prompt log-probs are not computed)", "logprobs", "unsupported_parameter");

  const tokenizer = ctx.model.tokenizer;
  const inputs = promptList(req.prompt);
  const vocab = ctx.model.config.vocab_size;
  const prompts = inputs.map((p, i) => {
    if (typeof p !== "string") {
      const bad = p.find((t) => t >= vocab);
      if (bad !== undefined) throw badRequest(`prompt[${i}]: token ${bad} is not in the vocabulary (size ${vocab})`, "prompt");
      return p;
    }
    if (!tokenizer) throw badRequest("this model folder has no tokenizer.json: send prompts as token ids", "prompt");
    return tokenizer.encode(p, { add_special_tokens: true }).ids;
  });
  const promptTexts = inputs.map((p) => (typeof p === "string" ? p : tokenizer ? decodeTokens(tokenizer, p, false) : ""));
  const plan = planSampling(ctx.model, req, prompts, { defaultMaxTokens: DEFAULT_MAX_TOKENS, promptParam: "prompt" });

  const id = completionId("cmpl");
  const created = nowSeconds();
  const chunk = (choices: unknown[]) => ({ id, object: "text_completion", created, model: ctx.modelName, choices });
  const stream = req.stream ? new EventStream(res) : undefined;
  const echoOf = (index: number) => (req.echo ? promptTexts[Math.floor(index / plan.n)]! : "");

  const echoed = new Set<number>();
  const sendText = (index: number, text: string) => {
    if (!echoed.has(index)) {
      echoed.add(index);
      text = echoOf(index) + text;
    }
    if (text) stream!.send(chunk([{ index, text, logprobs: null, finish_reason: null }]));
  };
  const done = await completeRequest(ctx, id, stream, {
    prompts, options: plan.options, n: plan.n, stops: plan.stops, logprobs: wantLogprobs, signal,
    ...(stream ? { onText: sendText } : {}),
  });
  if (!done) return;
  const { outcome, usage } = done;
  if (stream) {
    for (const c of outcome.choices) {
      sendText(c.index, "");
      stream.send(chunk([{ index: c.index, text: "", logprobs: null, finish_reason: c.finishReason }]));
    }
    if (req.stream_options?.include_usage) stream.send({ ...chunk([]), usage });
    stream.done();
    return;
  }
  sendJson(res, 200, {
    ...chunk(outcome.choices.map((c) => ({
      index: c.index,
      text: echoOf(c.index) + c.text,
      logprobs: wantLogprobs ? logprobsOf(c, 0) : null,
      finish_reason: c.finishReason,
    }))),
    usage,
  });
}
