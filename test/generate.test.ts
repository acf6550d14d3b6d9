// model.generate / generateStream through the public API: the transformers-port fixtures
// (test/fixtures/generation/generation.json, scripts/fixtures/make_generation_fixtures.py) for
// every model and case, token ids exactly and scores within 1e-4; text prompts and decoding;
// defaults from generation_config.json; streaming; AbortSignal; option errors; busy.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { GenerateOptionsError, Model, type GenerateOptions } from "../src/index.js";

const root = path.resolve(import.meta.dirname, "fixtures");

interface FixtureCase {
  name: string;
  inputs: number[][];
  config: Record<string, unknown>;
  sequences: Array<{ input_index: number; tokens: number[]; score: number }>;
}
const fixtures = JSON.parse(readFileSync(path.join(root, "generation/generation.json"), "utf8")) as {
  models: Record<string, FixtureCase[]>;
};

/** transformers' snake_case config -> the camelCase options of model.generate. */
function toOptions(config: Record<string, unknown>): GenerateOptions {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    out[k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = v;
  }
  return out as GenerateOptions;
}

const load = (name: string) => Model.load(path.join(root, "models", name));

describe("generate against the transformers-port fixtures", () => {
  for (const [name, cases] of Object.entries(fixtures.models)) {
    it(`${name}: ${cases.map((c) => c.name).join(", ")}`, async () => {
      const model = await load(name);
      for (const c of cases) {
        const r = await model.generate(c.inputs, toOptions(c.config));
        expect(r.sequences.length, c.name).toBe(c.sequences.length);
        c.sequences.forEach((want, i) => {
          const got = r.sequences[i]!;
          expect(got.inputIndex, `${c.name} #${i}`).toBe(want.input_index);
          expect(got.tokenIds, `${c.name} #${i}`).toEqual(want.tokens);
          expect(Math.abs(got.score - want.score), `${c.name} #${i} score`).toBeLessThan(1e-4);
          expect(got.tokenLogprobs.length).toBe(got.tokenIds.length);
        });
        expect(r.promptTokenIds).toEqual(c.inputs);
        expect(r.usage.completionTokens).toBe(c.sequences.reduce((n, s) => n + s.tokens.length, 0));
      }
    });
  }
});

describe("generate in 16-bit compute", () => {
  // bf16 / fp16 weight copies and rounded activations: greedy tokens of the fixtures' first case
  // stay the fp32 ones on these tiny models (their logits are far apart), the scores move by
  // rounding only.
  for (const dtype of ["bfloat16", "float16"] as const) {
    it(`${dtype}: the fp32 greedy tokens, scores within rounding`, async () => {
      const [name, cases] = Object.entries(fixtures.models)[0]!;
      const c = cases.find((k) => !k.config.do_sample && (k.config.num_beams ?? 1) === 1) ?? cases[0]!;
      const fp32 = await load(name);
      const half = await Model.load(path.join(root, "models", name), { computeDtype: dtype });
      expect(half.info().computeDtype).toBe(dtype);
      const want = await fp32.generate(c.inputs, toOptions(c.config));
      const got = await half.generate(c.inputs, toOptions(c.config));
      expect(got.sequences.map((q) => q.tokenIds)).toEqual(want.sequences.map((q) => q.tokenIds));
      const worst = Math.max(...got.sequences.map((q, i) => Math.abs(q.score - want.sequences[i]!.score)));
      expect(worst).toBeGreaterThan(0);  // the 16-bit path really ran
      expect(worst).toBeLessThan(dtype === "float16" ? 5e-2 : 3e-1);
    });
  }
});

describe("generate: text, defaults, streaming, abort, errors", () => {
  it("tokenizes text prompts and decodes the result (special tokens skipped)", async () => {
    const model = await load("t5-relu-tied");
    const r = await model.generate(["w10 w11 w12", "w20 w21"], { maxNewTokens: 6 });
    const tok = model.tokenizer!;
    expect(r.promptTokenIds[0]).toEqual(tok.encode("w10 w11 w12").ids);  // </s> appended by the tokenizer
    expect(r.promptTokenIds[0]!.at(-1)).toBe(1);
    for (const s of r.sequences) {
      expect(s.text).toBe(tok.decode(s.tokenIds, { skip_special_tokens: true }));
      expect(s.text).not.toContain("</s>");
    }
    // Token-id prompts give the same sequences.
    const ids = await model.generate(r.promptTokenIds, { maxNewTokens: 6 });
    expect(ids.sequences.map((s) => s.tokenIds)).toEqual(r.sequences.map((s) => s.tokenIds));
  });

  it("takes its defaults from generation_config.json (EOS, 20 new tokens) and lets options override them", async () => {
    const model = await load("llama-gqa");
    const prompt = [1, 40, 41, 42];
    const plain = await model.generate(prompt);
    const s = plain.sequences[0]!;
    // generation_config.json: eos_token_id 2; no length set -> 20 new tokens at most
    expect(s.tokenIds.length).toBeLessThanOrEqual(20);
    expect(s.finishReason === "eos" ? s.tokenIds.at(-1) === 2 : s.tokenIds.length === 20).toBe(true);
    const longer = await model.generate(prompt, { maxNewTokens: 30, eosTokenId: null });
    expect(longer.sequences[0]!.tokenIds.length).toBe(30);
    expect(longer.sequences[0]!.finishReason).toBe("length");
  });

  it("streams tokens with onToken and generateStream, the same tokens generate returns", async () => {
    const model = await load("gpt2");
    const options = { maxNewTokens: 12, eosTokenId: null, padTokenId: 0 } as const;
    const whole = await model.generate([[10, 20, 30], [40, 50]], options);
    const events: Array<{ sequence: number; tokenId: number; text: string }> = [];
    const again = await model.generate([[10, 20, 30], [40, 50]], { ...options, onToken: (e) => events.push(e) });
    expect(again.sequences.map((s) => s.tokenIds)).toEqual(whole.sequences.map((s) => s.tokenIds));
    for (const seq of [0, 1]) {
      const mine = events.filter((e) => e.sequence === seq);
      expect(mine.map((e) => e.tokenId)).toEqual(whole.sequences[seq]!.tokenIds);
      expect(mine.map((e) => e.text).join("").trim()).toBe(whole.sequences[seq]!.text);
    }
    const stream = model.generateStream([10, 20, 30], options);
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.map((c) => c.tokenId)).toEqual(whole.sequences[0]!.tokenIds);
    expect((await stream.result).sequences[0]!.tokenIds).toEqual(whole.sequences[0]!.tokenIds);
  });

  it("stops on an AbortSignal, and when a stream consumer breaks", async () => {
    const model = await load("llama-gqa");
    const controller = new AbortController();
    let seen = 0;
    const r = await model.generate([1, 5, 6], {
      maxNewTokens: 100, eosTokenId: null, signal: controller.signal,
      onToken: () => { if (++seen === 3) controller.abort(); },
    });
    const s = r.sequences[0]!;
    expect(s.finishReason).toBe("aborted");
    expect(s.tokenIds.length).toBeGreaterThanOrEqual(3);
    expect(s.tokenIds.length).toBeLessThan(40);  // the generating thread runs at most a few steps ahead
    // Already aborted: rejected before anything runs.
    await expect(model.generate([1, 5], { signal: AbortSignal.abort() })).rejects.toThrow(/abort/i);
    // Breaking out of a stream aborts it.
    const stream = model.generateStream([1, 5, 6], { maxNewTokens: 100, eosTokenId: null });
    let n = 0;
    for await (const _ of stream) if (++n === 2) break;
    const res = await stream.result;
    expect(res.sequences[0]!.finishReason).toBe("aborted");
    expect(res.sequences[0]!.tokenIds.length).toBeLessThan(40);
    // The model is free again.
    expect((await model.generate([1, 5], { maxNewTokens: 2 })).sequences[0]!.tokenIds.length).toBe(2);
  });

  it("samples reproducibly with a seed", async () => {
    const model = await load("qwen2");
    const opts = { doSample: true, topK: 10, temperature: 0.9, maxNewTokens: 10, seed: 42, numReturnSequences: 2 };
    const a = await model.generate([[5, 6, 7]], opts);
    const b = await model.generate([[5, 6, 7]], opts);
    expect(a.sequences.map((s) => s.tokenIds)).toEqual(b.sequences.map((s) => s.tokenIds));
    expect(a.sequences.length).toBe(2);
    // temperature 0 is greedy (transformers turns sampling off).
    const greedy = await model.generate([[5, 6, 7]], { maxNewTokens: 10 });
    const t0 = await model.generate([[5, 6, 7]], { doSample: true, temperature: 0, maxNewTokens: 10 });
    expect(t0.sequences[0]!.tokenIds).toEqual(greedy.sequences[0]!.tokenIds);
  });

  it("rejects bad options with messages naming them", async () => {
    const model = await load("gpt2");
    await expect(model.generate([1, 2], { numBeams: 0 })).rejects.toThrow(/numBeams/);
    await expect(model.generate([1, 2], { topP: 1.5 })).rejects.toThrow(/topP/);
    await expect(model.generate([1, 2], { foo: 1 } as unknown as GenerateOptions)).rejects.toThrow(/foo/);
    await expect(model.generate([1, 2], { numBeams: 2, onToken: () => {} })).rejects.toThrow(/beam search/);
    await expect(model.generate([1, 2], { numBeams: 2, numReturnSequences: 3 })).rejects.toThrow(/num_return_sequences <= num_beams/);
    await expect(model.generate([[1, 2.5]])).rejects.toThrow(GenerateOptionsError);
    await expect(model.generate([1, 999])).rejects.toThrow(/token ids in \[0, 96\)/);
    await expect(model.generate([1, 2], { maxNewTokens: 500 })).rejects.toThrow(/n_positions/);
    expect(() => model.generateStream([1, 2], { numBeams: 2 } as never)).toThrow(/numBeams/);
  });

  it("generates through an attached LoRA adapter and a trainable model", async () => {
    const model = await load("gpt2");
    const opts = { maxNewTokens: 8, eosTokenId: null } as const;
    const base = await model.generate([5, 6, 7], opts);
    model.applyLora({ r: 4, alpha: 8, targetModules: ["c_attn", "c_proj", "c_fc"] });  // B = 0
    expect((await model.generate([5, 6, 7], opts)).sequences[0]!.tokenIds).toEqual(base.sequences[0]!.tokenIds);
    const trainable = await load("llama-gqa");
    trainable.setTrainable(true);
    const before = await trainable.generate([1, 5, 6], opts);
    expect(before.sequences[0]!.tokenIds.length).toBe(8);  // no tape, no gradient needed
  });

  it("runs one call at a time per model (S2S_BUSY)", async () => {
    const model = await load("gpt2");
    const first = model.generate([1, 2, 3], { maxNewTokens: 30, eosTokenId: null });
    await expect(model.generate([1, 2], { maxNewTokens: 2 })).rejects.toMatchObject({ code: "S2S_BUSY" });
    expect((await first).sequences[0]!.tokenIds.length).toBe(30);
  });
});
