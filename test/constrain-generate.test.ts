// model.generate with jsonSchema on the tiny fixtures (random weights: free output is garbage, so
// every valid output is the constraint's doing) with a byte-level JSON tokenizer
// (constrain-helpers.ts): for schemas x seeds x greedy / sampling, every finished output parses
// and validates; EOS never comes before the value is complete; greedy under a constraint that
// never binds equals plain greedy, bit for bit; bad combinations are errors naming the option.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { GenerateOptionsError, Model } from "../src/index.js";
import { advanceBytes, canEnd, initialState } from "../src/constrain/json-recognizer.js";
import { compileJsonSchema } from "../src/constrain/json-schema.js";
import { loadTokenVocabulary, tokenBytes } from "../src/constrain/token-vocabulary.js";
import { jsonTokenizerModel, PIECES, SCHEMAS, wordPieceModel } from "./constrain-helpers.js";

const models = { gpt2: jsonTokenizerModel("gpt2"), llama: jsonTokenizerModel("llama-gqa") };

describe("generate with jsonSchema", () => {
  for (const [name, dir] of Object.entries(models)) {
    it(`${name}: every finished output parses and matches the schema (greedy and sampling, several seeds)`, async () => {
      const model = await Model.load(dir);
      const eos = name === "gpt2" ? 95 : 2;
      const vocabulary = loadTokenVocabulary(dir);
      let finished = 0, total = 0;
      for (const [schemaName, schema] of Object.entries(SCHEMAS)) {
        const validator = z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
        const runs = [
          { doSample: false },
          ...[1, 2, 3].map((seed) => ({ doSample: true, seed, temperature: 1.3, topK: 0 })),
          { doSample: true, seed: 7, topP: 0.9, numReturnSequences: 2 },
        ];
        for (const run of runs) {
          const r = await model.generate([[3, 4, 5], [6, 7]], { ...run, maxNewTokens: 48, jsonSchema: schema })
            .catch((e: unknown) => { throw new Error(`${schemaName} ${JSON.stringify(run)}: ${String(e)}`); });
          for (const s of r.sequences) {
            total++;
            // EOS only as the last token, and only where the text before it is complete.
            const body = s.finishReason === "eos" ? s.tokenIds.slice(0, -1) : s.tokenIds;
            expect(body.includes(eos)).toBe(false);
            const bytes = Buffer.concat(body.map((t) => Buffer.from(vocabulary.bytes[t]!)));
            const state = advanceBytes(initialState(compileJsonSchema(schema)), bytes);
            expect(state.length, `${schemaName} ${JSON.stringify(run)}: ${bytes.toString()}`).toBeGreaterThan(0);
            if (s.finishReason !== "eos") continue; // cut by maxNewTokens: a viable prefix
            finished++;
            expect(canEnd(state)).toBe(true);
            const value = JSON.parse(s.text!) as unknown;
            expect(validator.safeParse(value).success, `${schemaName}: ${s.text}`).toBe(true);
          }
        }
      }
      // Random weights still finish most values within 48 tokens under the constraint.
      expect(finished).toBeGreaterThan(total / 3);
    });
  }

  it("spells multi-byte characters through tokens that end mid-character", async () => {
    const model = await Model.load(models.gpt2);
    const id = (piece: string | number[]) => PIECES.findIndex((p) => JSON.stringify(p) === JSON.stringify(piece));
    // The whole-character tokens are banned, so é, 日 and 😀 can only come as byte pieces.
    const badWordsIds = [[id("é")], [id("日")], [id("😀")]];
    const schema = { type: "object", properties: { s: { enum: ["é日😀", "日é"] } }, required: ["s"] };
    for (const run of [{ doSample: false }, { doSample: true, seed: 1 }, { doSample: true, seed: 2 }]) {
      const r = await model.generate([[3, 4]], { ...run, maxNewTokens: 30, jsonSchema: schema, badWordsIds });
      const s = r.sequences[0]!;
      expect(s.finishReason).toBe("eos");
      expect(["é日😀", "日é"]).toContain((JSON.parse(s.text!) as { s: string }).s);
      for (const piece of [[0xc3], [0xa9]]) expect(s.tokenIds).toContain(id(piece));
    }
  });

  it("WordPiece (build-tokenizer's, cleanup off) on an encoder-decoder T5: '##' pieces spell compact JSON, never first", async () => {
    const { dir, vocab } = wordPieceModel("t5-relu-tied");
    const model = await Model.load(dir);
    const vocabulary = loadTokenVocabulary(dir);
    expect(vocabulary.kind).toBe("wordpiece");
    const continuation = new Set(Object.entries(vocab).filter(([t]) => t.startsWith("##")).map(([, id]) => id));
    const schema = { type: "object", properties: { name: { type: "string", maxLength: 6 }, age: { type: "integer" }, ok: { type: ["boolean", "null"] } }, required: ["name", "age", "ok"] };
    const validator = z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
    let finished = 0;
    for (const run of [{ doSample: false }, { doSample: true, seed: 1 }, { doSample: true, seed: 2 }, { doSample: true, seed: 3 }]) {
      const r = await model.generate([[5, 6, 7], [8]], { ...run, maxNewTokens: 60, jsonSchema: schema });
      for (const s of r.sequences) {
        expect(continuation.has(s.tokenIds[0]!)).toBe(false); // decoded first, a "##" piece would keep its "##"
        if (s.finishReason !== "eos") continue;
        finished++;
        expect(validator.safeParse(JSON.parse(s.text!)).success, s.text).toBe(true);
      }
    }
    expect(finished).toBeGreaterThan(0);
    // With cleanup on, a token's text depends on its neighbours: refused.
    const json = JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8")) as { decoder: { cleanup: boolean } };
    json.decoder.cleanup = true;
    expect(() => tokenBytes(json as unknown as Record<string, unknown>, "tokenizer.json")).toThrow(/WordPiece with cleanup/);
  });

  it("without the constraint the same model writes no JSON (the test would catch a no-op mask)", async () => {
    const model = await Model.load(models.gpt2);
    const r = await model.generate([[3, 4, 5]], { maxNewTokens: 20, doSample: true, seed: 1, topK: 0 });
    expect(() => JSON.parse(r.sequences[0]!.text!)).toThrow();
  });

  it("greedy equals plain greedy when the plain output satisfies the constraint at every step", async () => {
    // Every non-special token is one to three non-zero digits, and the schema is an integer:
    // any run of at most five such tokens (<= 15 digits, within the 16-digit limit) satisfies it
    // at every step, and EOS is allowed after the first digit, so greedy under the constraint
    // must pick exactly what plain greedy picks once plain greedy does not start with EOS.
    const digits: string[] = [];
    for (let n = 1; digits.length < 95; n++) if (!String(n).includes("0")) digits.push(String(n)); // 1..9, 11..99, 111..
    const dir = jsonTokenizerModel("gpt2", digits);
    const model = await Model.load(dir);
    let compared = 0;
    for (const prompt of [[3, 4, 5], [9], [10, 20, 30, 40], [50, 60], [1]]) {
      const plain = await model.generate([prompt], { maxNewTokens: 5 });
      const seq = plain.sequences[0]!;
      if (seq.tokenIds[0] === 95) continue; // EOS first: the constraint must bind there
      const constrained = await model.generate([prompt], { maxNewTokens: 5, jsonSchema: { type: "integer" } });
      expect(constrained.sequences[0]!.tokenIds, `prompt ${prompt}`).toEqual(seq.tokenIds);
      expect(Number.isInteger(JSON.parse(constrained.sequences[0]!.text!))).toBe(true);
      compared++;
    }
    expect(compared).toBeGreaterThan(2);
  });

  it("EOS is impossible before the value is complete, even where the model prefers it", async () => {
    // Plain greedy on this prompt ends at once with EOS for some prompt; constrained it must not.
    const model = await Model.load(models.gpt2);
    for (const prompt of [[3, 4, 5], [9], [10, 20, 30, 40], [50, 60], [1], [95]]) {
      const r = await model.generate([prompt], { maxNewTokens: 40, jsonSchema: SCHEMAS.person!, minNewTokens: 0 });
      const s = r.sequences[0]!;
      if (s.finishReason === "eos") expect(() => JSON.parse(s.text!)).not.toThrow();
      expect(s.tokenIds.indexOf(95)).toBe(s.finishReason === "eos" ? s.tokenIds.length - 1 : -1);
    }
  });

  it("refuses what it cannot do, naming the option", async () => {
    const model = await Model.load(models.gpt2);
    await expect(model.generate([[3]], { jsonSchema: { type: "object", patternProperties: {} } }))
      .rejects.toThrow(/jsonSchema: JSON schema: keyword "patternProperties" is not supported/);
    await expect(model.generate([[3]], { jsonSchema: { type: "object" }, numBeams: 2 }))
      .rejects.toThrow(/beam search with a constraint is not supported/);
    await expect(model.generate([[3]], { jsonSchema: { type: "object" }, eosTokenId: null }))
      .rejects.toThrow(/needs an end-of-sequence token/);
    await expect(model.generate([[3]], { jsonSchema: { type: "object" }, numBeams: 2 })).rejects.toBeInstanceOf(GenerateOptionsError);
    // The fixtures' own WordLevel tokenizer joins tokens with spaces: refused, saying why.
    const wordLevel = await Model.load(new URL("./fixtures/models/gpt2", import.meta.url).pathname);
    await expect(wordLevel.generate([[3]], { jsonSchema: { type: "object" } })).rejects.toThrow(/no decoder \(tokens are joined with spaces\)/);
    // The native argument is checked, and the model stays usable after the refusal.
    const native = (model as unknown as { native: { generate: (...a: unknown[]) => Promise<unknown> } }).native;
    expect(() => native.generate([Int32Array.of(3)], { maxNewTokens: 2 }, undefined, 5)).toThrow(/expected maskLogits to be a function/);
    await expect(model.generate([[3]], { maxNewTokens: 2 })).resolves.toBeDefined();
    // A processor that bans everything the schema allows is an error, not garbage.
    await expect(model.generate([[3]], { jsonSchema: { type: "integer" }, badWordsIds: [[18], [19], [20], [21], [22], [23], [24], [25], [26], [27], [28], [30], [35]] }))
      .rejects.toThrow(/every token the JSON schema allows at this step was banned by another option/);
  });

  it("streams under a constraint: the streamed text is the final JSON", async () => {
    const model = await Model.load(models.gpt2);
    let streamed = "";
    const stream = model.generateStream([3, 4], { maxNewTokens: 48, jsonSchema: SCHEMAS.strings!, doSample: true, seed: 5 });
    for await (const chunk of stream) streamed += chunk.text;
    const r = await stream.result;
    expect(streamed).toBe(r.sequences[0]!.text);
    if (r.sequences[0]!.finishReason === "eos") expect(() => JSON.parse(streamed)).not.toThrow();
  });
});
