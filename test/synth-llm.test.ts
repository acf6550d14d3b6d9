// LLM backends against a loopback OpenAI-compatible server the test scripts: request shape,
// structured output (response_format, fallback, validation, corrective retry), and the pool's
// failover on 500s, 429s with Retry-After, hangs, unreachable servers and bad model names, with
// per-endpoint concurrency.
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { OpenAiEndpoint } from "../src/llm/openai-endpoint.js";
import { EndpointPool } from "../src/llm/endpoint-pool.js";
import { completeStructured, StructuredOutputError } from "../src/llm/structured.js";
import { LlmError } from "../src/llm/types.js";
import { startChatServer, type ChatServer } from "./synth/fake-servers.js";

const servers: ChatServer[] = [];
async function server(...args: Parameters<typeof startChatServer>) {
  const s = await startChatServer(...args);
  servers.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const ask = { messages: [{ role: "user" as const, content: "hello" }] };
const pair = z.strictObject({ question: z.string().min(1), answer: z.string().min(1) });

describe("OpenAiEndpoint", () => {
  it("sends an OpenAI chat-completions request and reads content and usage", async () => {
    const s = await server(() => ({ content: "hi there" }));
    const e = new OpenAiEndpoint({ url: s.url, model: "tiny", timeoutMs: 5000, apiKey: "k" });
    const r = await e.complete({ ...ask, maxTokens: 7, temperature: 0.2, seed: 3, stop: ["\n"] });
    expect(r.text).toBe("hi there");
    expect(r.finishReason).toBe("stop");
    expect(r.usage).toEqual({ promptTokens: 1, completionTokens: 2 });
    expect(s.bodies[0]).toMatchObject({ model: "tiny", messages: ask.messages, max_tokens: 7, temperature: 0.2, seed: 3, stop: ["\n"] });
    expect(s.bodies[0]!.response_format).toBeUndefined();
  });

  it("asks for schema-constrained JSON with response_format json_schema", async () => {
    const s = await server(() => ({ content: '{"question": "q", "answer": "a"}' }));
    const e = new OpenAiEndpoint({ url: s.url, model: "m", timeoutMs: 5000, structuredOutput: "json_schema" });
    const r = await completeStructured(e, ask, { name: "pair", schema: pair });
    expect(r.value).toEqual({ question: "q", answer: "a" });
    const format = s.bodies[0]!.response_format!;
    expect(format.type).toBe("json_schema");
    expect(format.json_schema!.name).toBe("pair");
    expect(format.json_schema!.schema).toMatchObject({ type: "object", required: ["question", "answer"] });
  });

  it("auto mode drops response_format for good when the server refuses it with a 400", async () => {
    const s = await server((body) => body.response_format
      ? { status: 400, body: { error: { message: "response_format is not supported by this server", type: "invalid_request_error" } } }
      : { content: '{"question": "q", "answer": "a"}' });
    const e = new OpenAiEndpoint({ url: s.url, model: "m", timeoutMs: 5000 });
    await completeStructured(e, ask, { name: "pair", schema: pair });
    await completeStructured(e, ask, { name: "pair", schema: pair });
    expect(e.structuredOutputMode).toBe("none");
    expect(s.bodies.map((b) => b.response_format !== undefined)).toEqual([true, false, false]);
  });

  it("classifies failures: 500/429 retryable with Retry-After, 404 not, bodies that are not JSON retryable", async () => {
    const replies = [
      { status: 500 },
      { status: 429, headers: { "retry-after": "2" } },
      { status: 404, body: { error: { message: "model 'nope' not found" } } },
      { raw: "<html>bad gateway</html>" },
    ];
    const s = await server((_, i) => replies[i]!);
    const e = new OpenAiEndpoint({ url: s.url, model: "m", timeoutMs: 5000 });
    const errors: LlmError[] = [];
    for (let i = 0; i < 4; i++) errors.push(await e.complete(ask).then(() => { throw new Error("expected a failure"); }, (err: LlmError) => err));
    expect(errors.map((x) => x.retryable)).toEqual([true, true, false, true]);
    expect(errors[1]!.details.retryAfterMs).toBe(2000);
    expect(errors[2]!.message).toContain("model 'nope' not found");
  });

  it("gives up on a server that does not answer within the timeout", async () => {
    const s = await server(() => ({ hang: true }));
    const e = new OpenAiEndpoint({ url: s.url, model: "m", timeoutMs: 200 });
    await expect(e.complete(ask)).rejects.toThrow(/no answer within 200 ms/);
  });
});

describe("completeStructured", () => {
  it("repairs a fenced, trailing-comma answer locally without another request", async () => {
    const s = await server(() => ({ content: 'Sure!\n```json\n{"question": "q", "answer": "a",}\n```' }));
    const e = new OpenAiEndpoint({ url: s.url, model: "m", timeoutMs: 5000 });
    const r = await completeStructured(e, ask, { name: "pair", schema: pair });
    expect(r.value).toEqual({ question: "q", answer: "a" });
    expect(r.repairs).toEqual(expect.arrayContaining(["code_fence", "trailing_comma"]));
    expect(r.calls).toBe(1);
    expect(s.bodies).toHaveLength(1);
  });

  it("sends an answer that breaks the schema back with the error, and accepts the correction", async () => {
    const s = await server((_, i) => ({ content: i === 0 ? '{"question": "q"}' : '{"question": "q", "answer": "a"}' }));
    const e = new OpenAiEndpoint({ url: s.url, model: "m", timeoutMs: 5000 });
    const r = await completeStructured(e, ask, { name: "pair", schema: pair });
    expect(r.calls).toBe(2);
    const retry = s.bodies[1]!.messages;
    expect(retry.at(-2)).toEqual({ role: "assistant", content: '{"question": "q"}' });
    expect(retry.at(-1)!.content).toMatch(/answer.*(expected string|Invalid input)/i);
    expect(r.usage.completionTokens).toBeGreaterThan(0);
  });

  it("rejects with schema_mismatch or invalid_json when the correction fails too", async () => {
    const wrong = await server(() => ({ content: '{"question": 3, "answer": "a"}' }));
    const e1 = new OpenAiEndpoint({ url: wrong.url, model: "m", timeoutMs: 5000 });
    const err1 = await completeStructured(e1, ask, { name: "pair", schema: pair }).catch((e: unknown) => e);
    expect(err1).toBeInstanceOf(StructuredOutputError);
    expect((err1 as StructuredOutputError).reason).toBe("schema_mismatch");
    expect(wrong.bodies).toHaveLength(2);

    const garbage = await server(() => ({ content: "I cannot answer that." }));
    const e2 = new OpenAiEndpoint({ url: garbage.url, model: "m", timeoutMs: 5000 });
    const err2 = await completeStructured(e2, ask, { name: "pair", schema: pair, repairRetries: 0 }).catch((e: unknown) => e);
    expect((err2 as StructuredOutputError).reason).toBe("invalid_json");
    expect(garbage.bodies).toHaveLength(1);
  });
});

describe("EndpointPool", () => {
  const endpoint = (s: ChatServer, name: string, timeoutMs = 5000) => new OpenAiEndpoint({ url: s.url, model: "m", timeoutMs, name });

  it("fails over from an endpoint that answers 500 to one that works", async () => {
    const bad = await server(() => ({ status: 500 }));
    const good = await server(() => ({ content: "ok" }));
    const pool = new EndpointPool([{ backend: endpoint(bad, "bad"), concurrency: 2 }, { backend: endpoint(good, "good"), concurrency: 2 }],
      { baseDelayMs: 10_000 });
    const results = await Promise.all(Array.from({ length: 6 }, () => pool.complete(ask)));
    expect(results.every((r) => r.text === "ok" && r.backend === "good")).toBe(true);
    const stats = Object.fromEntries(pool.stats().map((s) => [s.name, s]));
    expect(stats.bad!.failures).toBeGreaterThan(0);
    expect(stats.bad!.failures).toBeLessThanOrEqual(2);  // cooling down after its failures, it gets no more work
    expect(stats.good!.requests).toBe(6);
  });

  it("fails over from an endpoint that hangs (timeout) and from one that is unreachable", async () => {
    const hang = await server(() => ({ hang: true }));
    const good = await server(() => ({ content: "ok" }));
    const closed = await server(() => ({ content: "never" }));
    const closedUrl = closed.url;
    await closed.close();
    servers.splice(servers.indexOf(closed), 1);
    const pool = new EndpointPool([
      { backend: endpoint(hang, "hang", 150), concurrency: 1 },
      { backend: new OpenAiEndpoint({ url: closedUrl, model: "m", timeoutMs: 1000, name: "closed" }), concurrency: 1 },
      { backend: endpoint(good, "good"), concurrency: 1 },
    ], { baseDelayMs: 10_000 });
    const r = await Promise.all([pool.complete(ask), pool.complete(ask), pool.complete(ask)]);
    expect(r.map((x) => x.text)).toEqual(["ok", "ok", "ok"]);
    const stats = Object.fromEntries(pool.stats().map((s) => [s.name, s]));
    expect(stats.hang!.failures).toBe(1);
    expect(stats.closed!.failures).toBe(1);
  });

  it("waits as long as Retry-After says before asking a rate-limited endpoint again", async () => {
    const s = await server((_, i) => (i === 0 ? { status: 429, headers: { "retry-after": "1" } } : { content: "ok" }));
    const pool = new EndpointPool([{ backend: endpoint(s, "only"), concurrency: 1 }], { baseDelayMs: 10 });
    const t0 = Date.now();
    expect((await pool.complete(ask)).text).toBe("ok");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it("takes an endpoint with a wrong model name (404) out of the pool", async () => {
    const wrong = await server(() => ({ status: 404, body: { error: { message: "model not found" } } }));
    const good = await server(() => ({ content: "ok" }));
    const pool = new EndpointPool([{ backend: endpoint(wrong, "wrong"), concurrency: 4 }, { backend: endpoint(good, "good"), concurrency: 1 }]);
    for (let i = 0; i < 4; i++) expect((await pool.complete(ask)).text).toBe("ok");
    expect(pool.stats()[0]!.disabled).toContain("model not found");
    expect(pool.stats()[0]!.requests).toBe(1);
  });

  it("keeps an endpoint that refuses one request (400): the request moves on, the endpoint stays", async () => {
    // llama.cpp answers 400 for a prompt longer than its context; a bigger server may take it.
    const small = await server((body) => (JSON.stringify(body).includes("long prompt")
      ? { status: 400, body: { error: { message: "the request exceeds the available context size" } } }
      : { content: "small" }));
    const big = await server(() => ({ content: "big" }));
    const pool = new EndpointPool([{ backend: endpoint(small, "small"), concurrency: 1 }, { backend: endpoint(big, "big"), concurrency: 1 }]);
    const long = { messages: [{ role: "user" as const, content: "a long prompt" }] };
    expect((await pool.complete(long)).text).toBe("big");
    expect(pool.stats()[0]!.disabled).toBeUndefined();
    expect(small.bodies).toHaveLength(1);
    expect((await pool.complete(ask)).text).toBe("small");

    // Refused everywhere: the refusal itself is the error, after one try per endpoint.
    const only = await server(() => ({ status: 422, body: { error: { message: "bad stop sequence" } } }));
    const alone = new EndpointPool([{ backend: endpoint(only, "only"), concurrency: 1 }], { maxAttempts: 5 });
    await expect(alone.complete(ask)).rejects.toThrow(/HTTP 422: bad stop sequence/);
    expect(only.bodies).toHaveLength(1);
    expect(alone.stats()[0]!.disabled).toBeUndefined();
  });

  it("keeps each endpoint within its concurrency and spreads the load over both", async () => {
    const a = await server(() => ({ content: "a", delayMs: 30 }));
    const b = await server(() => ({ content: "b", delayMs: 30 }));
    const pool = new EndpointPool([{ backend: endpoint(a, "a"), concurrency: 2 }, { backend: endpoint(b, "b"), concurrency: 3 }]);
    expect(pool.capacity).toBe(5);
    const r = await Promise.all(Array.from({ length: 30 }, () => pool.complete(ask)));
    expect(a.maxInFlight).toBeLessThanOrEqual(2);
    expect(b.maxInFlight).toBeLessThanOrEqual(3);
    expect(a.maxInFlight).toBe(2);
    expect(b.maxInFlight).toBe(3);
    const fromA = r.filter((x) => x.text === "a").length;
    expect(fromA).toBeGreaterThanOrEqual(8);
    expect(30 - fromA).toBeGreaterThanOrEqual(12);
  });

  it("gives up after maxAttempts when every endpoint keeps failing", async () => {
    const s = await server(() => ({ status: 503 }));
    const pool = new EndpointPool([{ backend: endpoint(s, "down"), concurrency: 1 }], { maxAttempts: 3, baseDelayMs: 5 });
    await expect(pool.complete(ask)).rejects.toThrow(/all 3 attempts failed.*HTTP 503/);
    expect(s.bodies).toHaveLength(3);
  });
});
