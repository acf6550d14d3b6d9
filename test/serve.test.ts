// `s2s-train serve` with the official openai client as the real client, against servers on
// ephemeral ports: gpt2 (completions), a qwen2 copy given a chat template (chat), t5-relu-tied
// (long generations: disconnect and queue overflow). Every answer is checked against
// model.generate on a second copy of the same model.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readChatTemplate, renderChat } from "../src/data/chat-template.js";
import { Model } from "../src/index.js";
import { outputCheckFor } from "../src/serve/response-format.js";
import { startServer, type RunningServer } from "../src/serve/server.js";
import { StopMatcher } from "../src/serve/stop-sequences.js";
import { z } from "zod";
import { jsonTokenizerModel, SCHEMAS } from "./constrain-helpers.js";

const models = path.resolve(import.meta.dirname, "fixtures/models");

// ChatML-like, with role words from the fixture's w<id> vocabulary (it has no "user" token).
const CHAT_TEMPLATE =
  "{%- for m in messages -%}<|im_start|>{{ 'w1' if m.role == 'system' else ('w2' if m.role == 'user' else 'w3') }} " +
  "{{ m.content }}<|im_end|>{%- endfor -%}{%- if add_generation_prompt -%}<|im_start|>w3 {%- endif -%}";

function client(server: RunningServer): OpenAI {
  return new OpenAI({ baseURL: server.url, apiKey: "unused", maxRetries: 0 });
}

async function expectApiError(p: Promise<unknown>, status: number, code?: string) {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e, "the request should have failed").toBeInstanceOf(OpenAI.APIError);
  const err = e as InstanceType<typeof OpenAI.APIError>;
  expect(err.status, err.message).toBe(status);
  if (code !== undefined) expect(err.code, err.message).toBe(code);
  return err;
}

describe("serve: completions (gpt2)", () => {
  let server: RunningServer;
  let api: OpenAI;
  let reference: Model;
  const logs: string[] = [];

  beforeAll(async () => {
    server = await startServer({ model: path.join(models, "gpt2"), port: 0, log: (l) => logs.push(l) });
    api = client(server);
    reference = await Model.load(path.join(models, "gpt2"));
  });
  afterAll(() => server?.close());

  it("listens on loopback and lists its model", async () => {
    expect(server.host).toBe("127.0.0.1");
    const list = await api.models.list();
    expect(list.data.map((m) => m.id)).toEqual(["gpt2"]);
    expect((await api.models.retrieve("gpt2")).owned_by).toBe("s2s-train");
  });

  it("completes a prompt as model.generate does, with usage", async () => {
    const r = await api.completions.create({ model: "gpt2", prompt: "w1 w2 w3", max_tokens: 8, temperature: 0 });
    const want = await reference.generate("w1 w2 w3", { maxNewTokens: 8, doSample: false });
    expect(r.object).toBe("text_completion");
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.text).toBe(want.sequences[0]!.text);
    expect(r.choices[0]!.finish_reason).toBe(want.sequences[0]!.finishReason === "eos" ? "stop" : "length");
    expect(r.usage).toEqual({ prompt_tokens: 3, completion_tokens: want.usage.completionTokens, total_tokens: 3 + want.usage.completionTokens });
  });

  it("defaults to 16 tokens, takes token-id prompts and batches, numbers choices prompt * n + k, and is seeded", async () => {
    const short = await api.completions.create({ model: "gpt2", prompt: [5, 6, 7], temperature: 0 });
    expect(short.usage!.completion_tokens).toBeLessThanOrEqual(16);
    const request = { model: "gpt2", prompt: ["w1 w2 w3", "w40"], max_tokens: 6, n: 2, temperature: 0.9, seed: 7 };
    const a = await api.completions.create(request);
    const b = await api.completions.create(request);
    expect(a.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(b.choices.map((c) => c.text)).toEqual(a.choices.map((c) => c.text));
    const want = await reference.generate(["w1 w2 w3", "w40"], { maxNewTokens: 6, numReturnSequences: 2, doSample: true, temperature: 0.9, seed: 7 });
    expect(a.choices.map((c) => c.text)).toEqual(want.sequences.map((s) => s.text));
    expect(a.usage!.prompt_tokens).toBe(4);
  });

  it("streams the same text in OpenAI's chunks, then the usage chunk, then [DONE]", async () => {
    const whole = await api.completions.create({ model: "gpt2", prompt: "w9 w8", max_tokens: 10, temperature: 0 });
    const stream = await api.completions.create({
      model: "gpt2", prompt: "w9 w8", max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    const finish: (string | null)[] = [];
    let usage;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.object).toBe("text_completion");
      for (const c of chunk.choices) {
        text += c.text;
        finish.push(c.finish_reason);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(chunks).toBeGreaterThan(3);  // token by token, not one block
    expect(text).toBe(whole.choices[0]!.text);
    expect(finish.at(-1)).toBe(whole.choices[0]!.finish_reason);
    expect(usage).toEqual(whole.usage);
  });

  it("ends at a stop sequence, without it, streamed or not, also when it spans tokens", async () => {
    const prompt = "w7 w70 w17";
    const whole = await api.completions.create({ model: "gpt2", prompt, max_tokens: 12, temperature: 0 });
    const text = whole.choices[0]!.text;
    expect(text).toBe("w54 w54 w54 w54 w54 w54 w90 w90 w90 w90 w90 w90");  // greedy, as model.generate gives it
    // "54 w90" starts inside the 6th token and ends in the 7th.
    const cut = text.slice(0, text.indexOf("54 w90"));
    for (const stop of [["zzz", "54 w90"], "54 w90"]) {
      const r = await api.completions.create({ model: "gpt2", prompt, max_tokens: 12, temperature: 0, stop });
      expect(r.choices[0]!.text).toBe(cut);
      expect(r.choices[0]!.finish_reason).toBe("stop");
      expect(r.usage!.completion_tokens).toBe(7);  // the tokens generated up to the stop
      const stream = await api.completions.create({ model: "gpt2", prompt, max_tokens: 12, temperature: 0, stop, stream: true });
      let streamed = "";
      let finish: string | null = null;
      for await (const chunk of stream) {
        for (const c of chunk.choices) {
          streamed += c.text;
          finish = c.finish_reason ?? finish;
        }
      }
      expect(streamed).toBe(cut);
      expect(finish).toBe("stop");
    }
  });

  it("returns the chosen tokens' log-probs (logprobs: 0), as model.generate scores them", async () => {
    const r = await api.completions.create({ model: "gpt2", prompt: "w3 w4", max_tokens: 5, temperature: 0, logprobs: 0 });
    const want = await reference.generate("w3 w4", { maxNewTokens: 5, doSample: false });
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens!.join("")).toBe(r.choices[0]!.text);
    expect(lp.token_logprobs).toHaveLength(want.sequences[0]!.tokenIds.length);
    lp.token_logprobs!.forEach((x, i) => expect(x).toBeCloseTo(want.sequences[0]!.tokenLogprobs[i]!, 5));
    expect(lp.text_offset![1]).toBe(lp.tokens![0]!.length);
  });

  it("answers bad requests with 4xx errors in OpenAI's shape", async () => {
    let e = await expectApiError(api.completions.create({ model: "gpt2", prompt: "w1", temperature: 5 }), 400);
    expect(e.param).toBe("temperature");
    expect(e.message).toContain("temperature");
    await expectApiError(api.completions.create({ model: "gpt-4", prompt: "w1" }), 404, "model_not_found");
    e = await expectApiError(api.completions.create({ model: "gpt2", prompt: "w1", max_tokens: 100 }), 400, "context_length_exceeded");
    expect(e.message).toContain("context is 64 tokens");
    await expectApiError(api.completions.create({ model: "gpt2", prompt: "w1", logit_bias: { "5": 3 } }), 400, "unsupported_parameter");
    await expectApiError(api.completions.create({ model: "gpt2", prompt: "w1", frequency_penalty: 0.5 }), 400, "unsupported_parameter");
    await expectApiError(api.completions.create({ model: "gpt2", prompt: "w1", n: 2, temperature: 0 }), 400);
    await expectApiError(api.completions.create({ model: "gpt2", prompt: [500] }), 400);
    e = await expectApiError(api.chat.completions.create({ model: "gpt2", messages: [{ role: "user", content: "w1" }] }), 400, "no_chat_template");
    expect(e.message).toContain("no chat template");
    // Not through the client: malformed JSON, a wrong method, an unknown path, a body over the limit.
    const post = (p: string, body: string) => fetch(`${server.url}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const bad = await post("/completions", "{\"model\": ");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain("not valid JSON");
    expect((await fetch(`${server.url}/completions`)).status).toBe(405);
    expect((await fetch(`${server.url}/nothing-here`)).status).toBe(404);
    const huge = await post("/completions", JSON.stringify({ model: "gpt2", prompt: "w1 ".repeat(400_000) }));
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as { error: { code: string } }).error.code).toBe("request_too_large");
  });

  it("banning the EOS token with logit_bias -100 generates to the length limit", async () => {
    const r = await api.completions.create({ model: "gpt2", prompt: "w1", max_tokens: 40, temperature: 0, logit_bias: { "95": -100 } });
    expect(r.usage!.completion_tokens).toBe(40);
    expect(r.choices[0]!.finish_reason).toBe("length");
  });
});

describe("serve: chat (qwen2 with a chat template)", () => {
  let server: RunningServer;
  let api: OpenAI;
  let reference: Model;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "s2s-chat-"));
    cpSync(path.join(models, "qwen2"), dir, { recursive: true });
    const configFile = path.join(dir, "tokenizer_config.json");
    const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
    writeFileSync(configFile, JSON.stringify({ ...config, chat_template: CHAT_TEMPLATE }));
    server = await startServer({ model: dir, port: 0, modelName: "tiny-chat", log: () => {} });
    api = client(server);
    reference = await Model.load(dir);
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const messages = [
    { role: "system" as const, content: "w10 w11" },
    { role: "user" as const, content: "w20 w21 w22" },
  ];
  // What the template renders, tokenized without adding special tokens (as transformers does).
  const promptIds = () => reference.tokenizer!.encode(
    "<|im_start|>w1 w10 w11<|im_end|><|im_start|>w2 w20 w21 w22<|im_end|><|im_start|>w3", { add_special_tokens: false }).ids;

  it("renders the chat template and answers like model.generate on the rendered prompt", async () => {
    const r = await api.chat.completions.create({ model: "tiny-chat", messages, max_tokens: 10, temperature: 0 });
    const ids = promptIds();
    expect(ids).toContain(94);  // <|im_start|> as one special token
    const want = await reference.generate(ids, { maxNewTokens: 10, doSample: false });
    expect(r.object).toBe("chat.completion");
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(r.choices[0]!.message.content).toBe(want.sequences[0]!.text);
    expect(r.usage!.prompt_tokens).toBe(ids.length);
    expect(r.usage!.completion_tokens).toBe(want.usage.completionTokens);
  });

  it("streams chat deltas (role first) that add up to the same message", async () => {
    const whole = await api.chat.completions.create({ model: "tiny-chat", messages, max_tokens: 10, temperature: 0 });
    const stream = await api.chat.completions.create({ model: "tiny-chat", messages, max_tokens: 10, temperature: 0, stream: true });
    let content = "";
    const roles: (string | undefined)[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe("chat.completion.chunk");
      for (const c of chunk.choices) {
        roles.push(c.delta.role);
        content += c.delta.content ?? "";
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    expect(roles[0]).toBe("assistant");
    expect(content).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
  });

  it("refuses response_format it cannot honour: an unusable schema, a tokenizer the constraint cannot map", async () => {
    await expectApiError(api.chat.completions.create({
      model: "tiny-chat", messages, max_tokens: 5,
      response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", if: {} } } },
    }), 400, "invalid_json_schema");
    const keyword = await expectApiError(api.chat.completions.create({
      model: "tiny-chat", messages, max_tokens: 5,
      response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "array", contains: { type: "integer" } } } } } },
    }), 400, "unsupported_json_schema");
    expect(keyword.message).toContain('at /properties/a: keyword "contains" is not supported');
    expect(keyword.param).toBe("response_format");
    // This fixture's WordLevel tokenizer joins tokens with spaces: no constrained decoding.
    const e = await expectApiError(api.chat.completions.create({
      model: "tiny-chat", messages, max_tokens: 5, temperature: 0,
      response_format: { type: "json_schema", json_schema: { name: "answer", schema: { type: "object", properties: { a: { type: "integer" } } } } },
    }), 400, "unsupported_tokenizer");
    expect(e.message).toContain("tokens are joined with spaces");
    await expectApiError(api.chat.completions.create({
      model: "tiny-chat", messages, stream: true, response_format: { type: "json_object" },
    }), 400, "unsupported_tokenizer");
    await expectApiError(api.chat.completions.create({ model: "tiny-chat", messages: [] }), 400);
    await expectApiError(api.chat.completions.create({
      model: "tiny-chat", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x" } }] }],
    }), 400);
  });
});

describe("serve: response_format is constrained while decoding (qwen2 with a byte-level JSON tokenizer)", () => {
  let server: RunningServer;
  let api: OpenAI;
  let dir: string;

  beforeAll(async () => {
    dir = jsonTokenizerModel("qwen2");
    const configFile = path.join(dir, "tokenizer_config.json");
    const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
    const template = "{%- for m in messages -%}<|im_start|>{{ m.content }}<|im_end|>{%- endfor -%}<|im_start|>";
    writeFileSync(configFile, JSON.stringify({ ...config, chat_template: template }));
    server = await startServer({ model: dir, port: 0, modelName: "json-chat", log: () => {} });
    api = client(server);
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const messages = [{ role: "user" as const, content: "a b c" }];

  it("answers with JSON that matches the schema, greedy and sampled, through the openai client", async () => {
    let answered = 0, cut = 0;
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      const validator = z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
      for (const sampling of [{ temperature: 0 }, { temperature: 1.2, seed: 3, n: 2 }]) {
        const r = await api.chat.completions.create({
          model: "json-chat", messages, max_tokens: 60, ...sampling,
          response_format: { type: "json_schema", json_schema: { name, schema } },
        }).catch((e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
        if (r instanceof OpenAI.APIError) {
          // Only a cut by max_tokens may fail the safety net, and it says so.
          expect(r.code, `${name}: ${r.message}`).toBe("response_format_not_satisfied");
          expect(r.message).toContain("max_tokens ended the output");
          cut++;
          continue;
        }
        answered++;
        for (const c of (r as OpenAI.ChatCompletion).choices) {
          expect(c.finish_reason).toBe("stop");
          expect(validator.safeParse(JSON.parse(c.message.content!)).success, `${name}: ${c.message.content}`).toBe(true);
        }
      }
    }
    expect(answered, `${cut} cut by max_tokens`).toBeGreaterThan(0);
  });

  it("json_object gives an object; streaming with response_format is allowed and adds up to valid JSON", async () => {
    // Any object may be long (random weights wander in strings): of a few seeds, those that end are objects.
    let objects = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const r = await api.chat.completions.create({ model: "json-chat", messages, max_tokens: 100, temperature: 2, seed, response_format: { type: "json_object" } })
        .catch((e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
      if (r instanceof OpenAI.APIError) {
        expect(r.message).toContain("max_tokens ended the output");
        continue;
      }
      const value = JSON.parse(r.choices[0]!.message.content!) as unknown;
      expect(typeof value === "object" && value !== null && !Array.isArray(value)).toBe(true);
      objects++;
    }
    expect(objects).toBeGreaterThan(0);
    const schema = SCHEMAS.strings!;
    const stream = await api.chat.completions.create({
      model: "json-chat", messages, max_tokens: 60, temperature: 0, stream: true,
      response_format: { type: "json_schema", json_schema: { name: "s", schema } },
    });
    let content = "";
    for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? "";
    expect(z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]).safeParse(JSON.parse(content)).success, content).toBe(true);
  });
});

describe("serve: cancellation and the queue (t5-relu-tied, long generations)", () => {
  let server: RunningServer;
  let api: OpenAI;
  const logs: string[] = [];
  // EOS banned, so each of these runs its full length (thousands of steps).
  const long = { model: "t5", prompt: "w5 w6 w7", max_tokens: 4000, temperature: 0, logit_bias: { "1": -100 as const } };

  beforeAll(async () => {
    server = await startServer({ model: path.join(models, "t5-relu-tied"), port: 0, modelName: "t5", maxQueue: 1, log: (l) => logs.push(l) });
    api = client(server);
  });
  afterAll(() => server?.close());

  it("cancels the generation when a streaming client disconnects, and stays healthy", async () => {
    const stream = await api.completions.create({ ...long, stream: true });
    let chunks = 0;
    for await (const _ of stream) {
      if (++chunks === 3) break;  // leaving the loop aborts the request
    }
    // The server notices the closed connection and stops decoding after at most a few steps.
    let cancelled: string | undefined;
    for (let i = 0; i < 200 && !cancelled; i++) {
      cancelled = logs.find((l) => l.includes("cancelled after"));
      if (!cancelled) await new Promise((r) => setTimeout(r, 10));
    }
    expect(cancelled, logs.join("\n")).toBeDefined();
    const tokens = Number(/cancelled after (\d+) tokens/.exec(cancelled!)![1]);
    expect(tokens).toBeLessThan(1000);
    const health = (await (await fetch(`http://127.0.0.1:${server.port}/health`)).json()) as { generating: boolean; waiting: number };
    expect(health).toMatchObject({ generating: false, waiting: 0 });
    const after = await api.completions.create({ model: "t5", prompt: "w5 w6 w7", max_tokens: 5, temperature: 0 });
    expect(after.choices[0]!.text.length).toBeGreaterThan(0);
  });

  it("refuses requests beyond the queue depth with 429 while serving the others", async () => {
    const request = { ...long, max_tokens: 1500 };
    const results = await Promise.allSettled([1, 2, 3].map(() => api.completions.create(request)));
    const ok = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(ok).toHaveLength(2);  // one generating, one waiting (--max-queue 1)
    expect(refused).toHaveLength(1);
    const e = refused[0]!.reason as InstanceType<typeof OpenAI.APIError>;
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    expect(e.code).toBe("queue_full");
    for (const r of ok) expect((r as PromiseFulfilledResult<OpenAI.Completion>).value.usage!.completion_tokens).toBe(1500);
  });
});

describe("serve: pieces", () => {
  it("StopMatcher holds back what may start a stop sequence and cuts at the first one", () => {
    const m = new StopMatcher(["END", "xy"]);
    expect(m.push("abc E")).toBe("abc ");
    expect(m.push("N")).toBe("");
    expect(m.push("D tail")).toBe("");
    expect(m.stopped).toBe(true);
    expect(m.output).toBe("abc ");
    const n = new StopMatcher(["END"]);
    expect(n.push("aE")).toBe("a");
    expect(n.push("x")).toBe("Ex");
    expect(n.push("EN")).toBe("");
    expect(n.flush()).toBe("EN");  // never completed: released at the end
  });

  it("a chat template may come from chat_template.jinja (where newer transformers saves it)", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-jinja-"));
    cpSync(path.join(models, "qwen2"), dir, { recursive: true });
    expect(readChatTemplate(dir)).toBeUndefined();
    writeFileSync(path.join(dir, "chat_template.jinja"), CHAT_TEMPLATE);
    const chat = readChatTemplate(dir)!;
    expect(chat.file).toBe(path.join(dir, "chat_template.jinja"));
    expect(renderChat(chat, [{ role: "user", content: "w5" }], true, "test")).toBe("<|im_start|>w2 w5<|im_end|><|im_start|>w3");
    rmSync(dir, { recursive: true, force: true });
  });

  it("response_format checks parse the JSON and apply the schema", () => {
    const check = outputCheckFor({
      type: "json_schema",
      json_schema: { name: "a", schema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"], additionalProperties: false } },
    })!;
    expect(check("{\"n\":3}")).toBeUndefined();
    expect(check("{\"n\":3.5}")).toContain("does not match the schema");
    expect(check("{\"n\":3,\"m\":1}")).toContain("does not match the schema");
    expect(check("n = 3")).toContain("not valid JSON");
    // enum and const of objects and arrays compare by value (zod alone compares them by identity).
    const choice = outputCheckFor({
      type: "json_schema",
      json_schema: { name: "c", schema: { type: "object", properties: { at: { enum: [{ x: 1 }, [1, 2], "none"] }, k: { const: [3] } }, required: ["at", "k"] } },
    })!;
    expect(choice("{\"at\":{\"x\":1},\"k\":[3]}")).toBeUndefined();
    expect(choice("{\"at\":[1,2],\"k\":[3]}")).toBeUndefined();
    expect(choice("{\"at\":\"none\",\"k\":[3]}")).toBeUndefined();
    expect(choice("{\"at\":{\"x\":2},\"k\":[3]}")).toContain("does not match the schema");
    expect(choice("{\"at\":\"none\",\"k\":[4]}")).toContain("does not match the schema");
    // Keywords decoding does not enforce are zod's.
    const pattern = outputCheckFor({ type: "json_schema", json_schema: { name: "p", schema: { type: "string", pattern: "^a+$" } } })!;
    expect(pattern("\"aaa\"")).toBeUndefined();
    expect(pattern("\"ab\"")).toContain("does not match the schema");
    expect(outputCheckFor({ type: "json_object" })!("[1]")).toContain("not an object");
    expect(outputCheckFor({ type: "text" })).toBeUndefined();
  });
});
