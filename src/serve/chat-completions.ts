// POST /v1/chat/completions: messages rendered with the model folder's chat template
// (tokenizer_config.json's chat_template, through @huggingface/jinja), then generated as one prompt.
import type { ServerResponse } from "node:http";
import { z } from "zod";
import { renderChat, type ChatMessage } from "../data/chat-template.js";
import { badRequest, parseRequest } from "./api-error.js";
import { completeRequest, type CompletionChoice } from "./completion-engine.js";
import { checkModelName, completionId, EventStream, nowSeconds, sendJson, type ServeContext } from "./http-context.js";
import { decodingSchemaFor, outputCheckFor, responseFormatSchema, unsatisfiedFormat, type ResponseFormat } from "./response-format.js";
import { planSampling, samplingFields } from "./sampling-params.js";

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });

const messageSchema = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant"], { error: "expected system, developer, user or assistant (tool messages need tools, which this server does not support)" }),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().optional(),
});

const chatRequestSchema = z.looseObject({
  model: z.string().min(1),
  messages: z.array(messageSchema).min(1, { error: "expected at least one message" }),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  response_format: responseFormatSchema.nullish(),
  tools: z.array(z.unknown()).nullish(),
  tool_choice: z.unknown().optional(),
  functions: z.array(z.unknown()).nullish(),
  ...samplingFields,
});

/** Message contents as plain text (text parts joined); other parts are a 400. */
function plainMessages(messages: z.infer<typeof messageSchema>[]): ChatMessage[] {
  return messages.map((m, i) => {
    let content = "";
    if (typeof m.content === "string") {
      content = m.content;
    } else if (Array.isArray(m.content)) {
      content = m.content.map((part, j) => {
        if (part.type !== "text" || typeof part.text !== "string") {
          throw badRequest(`messages[${i}].content[${j}]: only text parts are supported, got type '${part.type}'`, `messages[${i}].content`);
        }
        return part.text;
      }).join("");
    }
    // Templates know system, user and assistant; OpenAI's developer role is the system role.
    return { role: m.role === "developer" ? "system" : m.role, content };
  });
}

export async function handleChatCompletions(ctx: ServeContext, body: unknown, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const req = parseRequest(chatRequestSchema, body);
  checkModelName(ctx, req.model);
  if (req.tools?.length || req.functions?.length) {
    throw badRequest("tools / function calling is not supported by this server", req.tools?.length ? "tools" : "functions", "unsupported_parameter");
  }
  if (req.top_logprobs) {
    throw badRequest("top_logprobs > 0 is not supported: the engine reports the chosen token's log-prob only", "top_logprobs", "unsupported_parameter");
  }
  if (req.logprobs && req.stream) throw badRequest("logprobs with stream: true is not supported", "logprobs", "unsupported_parameter");
  const format = (req.response_format ?? undefined) as ResponseFormat | undefined;
  const checkOutput = outputCheckFor(format);
  const jsonSchema = decodingSchemaFor(format, ctx.model.folder.dir);
  if (!ctx.chatTemplate) {
    throw badRequest(`this model has no chat template (no chat_template in ${ctx.model.folder.dir}/tokenizer_config.json, ` +
      "no chat_template.jinja): use /v1/completions with a plain prompt", "messages", "no_chat_template");
  }
  const tokenizer = ctx.model.tokenizer;
  if (!tokenizer) throw badRequest("this model folder has no tokenizer.json, so chat messages cannot be tokenized", "messages");
  const messages = plainMessages(req.messages);
  let text: string;
  try {
    text = renderChat(ctx.chatTemplate, messages, true, "messages");
  } catch (e) {
    throw badRequest((e as Error).message, "messages", "chat_template_error");
  }
  // The template holds the special tokens; transformers tokenizes it without adding more.
  const prompt = tokenizer.encode(text, { add_special_tokens: false }).ids;
  const plan = planSampling(ctx.model, { ...req, max_tokens: req.max_completion_tokens ?? req.max_tokens }, [prompt], { promptParam: "messages" });
  if (jsonSchema) plan.options.jsonSchema = jsonSchema;

  const id = completionId("chatcmpl");
  const created = nowSeconds();
  const chunk = (choices: unknown[]) => ({ id, object: "chat.completion.chunk", created, model: ctx.modelName, choices });
  const stream = req.stream ? new EventStream(res) : undefined;
  const greeted = new Set<number>();
  const sendDelta = (index: number, content: string) => {
    // The first chunk of each choice names the role, as OpenAI's do.
    const delta = greeted.has(index) ? { content } : { role: "assistant", content };
    greeted.add(index);
    stream!.send(chunk([{ index, delta, logprobs: null, finish_reason: null }]));
  };

  const done = await completeRequest(ctx, id, stream, {
    prompts: [prompt], options: plan.options, n: plan.n, stops: plan.stops, logprobs: req.logprobs === true, signal,
    ...(stream ? { onText: sendDelta } : {}),
  });
  if (!done) return;
  const { outcome, usage } = done;
  // The safety net (see response-format.ts): a streamed answer that fails it ends with the error.
  const unsatisfied = checkOutput && outcome.choices.map((c) => {
    const problem = checkOutput(c.text);
    return problem ? unsatisfiedFormat(problem, c.text, c.finishReason) : undefined;
  }).find((e) => e !== undefined);
  if (stream) {
    if (unsatisfied) return stream.fail(unsatisfied);
    for (const c of outcome.choices) {
      if (!greeted.has(c.index)) sendDelta(c.index, "");
      stream.send(chunk([{ index: c.index, delta: {}, logprobs: null, finish_reason: c.finishReason }]));
    }
    if (req.stream_options?.include_usage) stream.send({ ...chunk([]), usage });
    stream.done();
    return;
  }
  if (unsatisfied) throw unsatisfied;
  const logprobsOf = (c: CompletionChoice) => ({
    content: c.logprobs.map((t) => ({ token: t.token, logprob: t.logprob, bytes: [...Buffer.from(t.token, "utf8")], top_logprobs: [] })),
    refusal: null,
  });
  sendJson(res, 200, {
    id, object: "chat.completion", created, model: ctx.modelName,
    choices: outcome.choices.map((c) => ({
      index: c.index,
      message: { role: "assistant", content: c.text, refusal: null },
      logprobs: req.logprobs ? logprobsOf(c) : null,
      finish_reason: c.finishReason,
    })),
    usage,
  });
}
