// The JSON-schema recognizer (src/constrain) on bytes, without a model: complete values of the
// schema are accepted and end there, invalid ones are refused at the first wrong byte, random
// walks over the allowed bytes always stay parseable and valid once they may end, and a schema
// outside the supported subset is an error naming the keyword.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { advance, advanceBytes, canEnd, initialState } from "../src/constrain/json-recognizer.js";
import { compileJsonSchema, UnsupportedSchemaError } from "../src/constrain/json-schema.js";
import { buildTrie, tokenBytes } from "../src/constrain/token-vocabulary.js";
import { JsonConstraint } from "../src/constrain/json-constraint.js";
import { byteLevelTokenizer, PIECES, SCHEMAS } from "./constrain-helpers.js";

const enc = new TextEncoder();

function accepts(schema: unknown, text: string): boolean {
  const s = advanceBytes(initialState(compileJsonSchema(schema)), enc.encode(text));
  return s.length > 0 && canEnd(s);
}
function viablePrefix(schema: unknown, text: string): boolean {
  return advanceBytes(initialState(compileJsonSchema(schema)), enc.encode(text)).length > 0;
}


describe("json recognizer", () => {
  it("accepts complete compact values of the schema and nothing longer", () => {
    expect(accepts(SCHEMAS.person, '{"name":"Ann","age":31}')).toBe(true);
    expect(accepts(SCHEMAS.person, '{"name":"Ann","age":31,"tags":["a","b"]}')).toBe(true);
    expect(accepts(SCHEMAS.person, ' {"name":"Ann","age":-0}')).toBe(true); // one leading space
    expect(accepts(SCHEMAS.person, '{"name":"Ann"}')).toBe(false); // age is required
    expect(viablePrefix(SCHEMAS.person, '{"name":"Ann"}')).toBe(false); // '}' before age
    expect(viablePrefix(SCHEMAS.person, '{"age":1')).toBe(false); // order as listed, name required first
    expect(viablePrefix(SCHEMAS.person, '{"name":"Ann","age":3.5')).toBe(false); // integer
    expect(viablePrefix(SCHEMAS.person, '{"name": "Ann"')).toBe(false); // no whitespace
    expect(viablePrefix(SCHEMAS.person, '{"name":"0123456789abc')).toBe(false); // maxLength 12
    expect(viablePrefix(SCHEMAS.person, '{"name":"a","age":1,"tags":["a","b","c",')).toBe(false); // maxItems 3
    expect(viablePrefix(SCHEMAS.person, '{"name":"a","age":01')).toBe(false); // no leading zeros
    expect(accepts(SCHEMAS.nested, '{"id":1.5e-3,"kind":true,"child":{"x":null,"y":false}}')).toBe(true);
    expect(accepts({ enum: [{ a: [1, 2] }, [null]] }, '{"a":[1,2]}')).toBe(true); // enum of any JSON, compact
    expect(accepts({ enum: [{ a: [1, 2] }, [null]] }, '[null]')).toBe(true);
    expect(viablePrefix({ enum: [{ a: [1, 2] }] }, '{"a":[1,3')).toBe(false);
    expect(accepts(SCHEMAS.nested, '{"id":1,"kind":12,"child":{"x":"\\u00e9\\n","y":true}}')).toBe(true);
    expect(viablePrefix(SCHEMAS.nested, '{"id":1,"kind":1,')).toBe(false); // enum has 12, not 1
    expect(viablePrefix(SCHEMAS.nested, '{"id":1,"kind":"r"')).toBe(false);
    expect(accepts(SCHEMAS.union, "null")).toBe(true);
    expect(accepts(SCHEMAS.union, '"x"')).toBe(true);
    expect(accepts(SCHEMAS.union, '[{"a":1,"b":2.5},{"a":2}]')).toBe(true);
    expect(viablePrefix(SCHEMAS.union, "[]")).toBe(false); // minItems 1
    expect(accepts(SCHEMAS.anyObject, '{"q":[1,{"r":null}],"":"\\"日本😀"}')).toBe(true);
    expect(accepts(SCHEMAS.anyObject, "[]")).toBe(false);
    expect(accepts(SCHEMAS.strings, '{"s":"ab","e":"green"}')).toBe(true);
    expect(viablePrefix(SCHEMAS.strings, '{"s":"a"')).toBe(false); // minLength 2
    expect(accepts(SCHEMAS.numbers, "[1,-2,\"abc\",0]")).toBe(true);
    expect(viablePrefix(SCHEMAS.numbers, "[1.5")).toBe(false);
    expect(accepts({ type: "array", items: { type: "number" } }, "[1,-2.5,3e+10,0,1E-99]")).toBe(true);
    expect(accepts(SCHEMAS.free, '{"a":"x","b":1,"c":2}')).toBe(true);
    expect(viablePrefix(SCHEMAS.free, '{"a":"x","a"')).toBe(false); // a listed name cannot come again
    expect(accepts({ type: "integer" }, "123")).toBe(true); // a root number ends at the end of sequence
    expect(viablePrefix({ type: "integer" }, "123 ")).toBe(false);
  });

  it("checks UTF-8 byte by byte inside strings (a token may end inside a character)", () => {
    const s = initialState(compileJsonSchema({ type: "string" }));
    const quote = advance(s, 0x22);
    expect(advance(quote, 0xc3).length).toBe(1); // lead byte of é
    expect(advance(advance(quote, 0xc3), 0xa9).length).toBe(1);
    expect(advance(advance(quote, 0xc3), 0x22).length).toBe(0); // a character cut by the quote
    expect(advance(quote, 0x80).length).toBe(0); // a lone continuation byte
    expect(advance(quote, 0xff).length).toBe(0);
    expect(advance(advance(quote, 0xed), 0xa0).length).toBe(0); // a UTF-16 surrogate encoded in UTF-8
    expect(advance(quote, 0x0a).length).toBe(0); // raw control character
    expect(accepts({ type: "string", maxLength: 1 }, '"😀"')).toBe(true); // one code point
    expect(viablePrefix({ type: "string", maxLength: 1 }, '"a😀')).toBe(false);
    expect(viablePrefix({ type: "string" }, '"\\ud83d')).toBe(false); // no surrogate escapes
    expect(accepts({ type: "string" }, '"\\uD7ff\\u00E9"')).toBe(true);
  });

  it("random walks over allowed bytes always give JSON that parses and validates", () => {
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const alphabet = Array.from({ length: 256 }, (_, b) => b);
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      const validator = z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
      let finished = 0;
      for (let walk = 0; walk < 60; walk++) {
        let state = initialState(compileJsonSchema(schema));
        const bytes: number[] = [];
        for (let i = 0; i < 300; i++) {
          if (canEnd(state) && rand() < 0.3) break;
          const options = alphabet.filter((b) => advance(state, b).length > 0);
          // Every live state either can end or has a next byte (no dead ends).
          expect(options.length > 0 || canEnd(state), `${name}: stuck after ${Buffer.from(bytes).toString()}`).toBe(true);
          if (options.length === 0) break;
          // Prefer closing bytes most of the time so walks finish.
          const closers = options.filter((b) => b === 0x7d || b === 0x5d || b === 0x22);
          const pool = closers.length > 0 && rand() < 0.7 ? closers : options;
          const b = pool[Math.floor(rand() * pool.length)]!;
          bytes.push(b);
          state = advance(state, b);
        }
        if (!canEnd(state)) continue;
        finished++;
        const text = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
        const value = JSON.parse(text) as unknown;
        expect(validator.safeParse(value).success, `${name}: ${text}`).toBe(true);
      }
      expect(finished, name).toBeGreaterThan(10);
    }
  });

  it("refuses keywords outside the subset, naming them; narrowing-only ones pass", () => {
    const err = (schema: unknown) => {
      try {
        compileJsonSchema(schema);
      } catch (e) {
        expect(e).toBeInstanceOf(UnsupportedSchemaError);
        return (e as Error).message;
      }
      return "no error";
    };
    expect(err({ type: "object", properties: { a: { allOf: [{ type: "string" }] } } })).toMatch(/at \/properties\/a: keyword "allOf" is not supported/);
    expect(err({ type: "array", prefixItems: [] })).toMatch(/"prefixItems"/);
    expect(err({ not: {} })).toMatch(/"not"/);
    expect(err({ type: "object", properties: { n: { $ref: "#/$defs/n" } }, $defs: { n: { type: "object", properties: { n: { $ref: "#/$defs/n" } } } } })).toMatch(/recursive/);
    expect(err({ $ref: "https://example.com/s.json" })).toMatch(/only #\/\$defs/);
    expect(err({ type: "date" })).toMatch(/type: expected one of/);
    expect(err({ type: "object", properties: {}, required: ["a"] })).toMatch(/required names "a"/);
    expect(err({ type: "string", pattern: "^a", format: "email" })).toBe("no error");
    expect(err({ type: "integer", minimum: 0, maximum: 9, description: "d", title: "t" })).toBe("no error");
  });
});

describe("token bytes per decoder", () => {
  const dec = (b: Uint8Array | null) => (b ? Buffer.from(b).toString("latin1") : null);
  it("SentencePiece: '▁' is a space, <0xNN> byte-fallback pieces are single bytes, special tokens have none", () => {
    // Llama 2's decoder: Replace ▁ -> " ", ByteFallback, Fuse, Strip (one leading space).
    const llama = {
      model: { type: "BPE", vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xC3>": 4, "<0xA9>": 5, "▁{": 6, "\"": 7, "▁\"": 8, "é": 9 }, merges: [] },
      added_tokens: [0, 1, 2].map((id) => ({ id, content: ["<unk>", "<s>", "</s>"][id], special: true })),
      decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
    };
    const { bytes, kind, notFirst } = tokenBytes(llama, "tokenizer.json");
    expect(kind).toBe("sentencepiece");
    expect(notFirst.length).toBe(0);
    expect(bytes.map(dec)).toEqual([null, null, null, "\n", "\xc3", "\xa9", " {", '"', ' "', "\xc3\xa9"]);
    // T5 / Metaspace: Unigram's [piece, score] list.
    const t5 = { model: { type: "Unigram", vocab: [["<pad>", 0], ["</s>", 0], ["▁", -1], ["▁true", -2]] }, added_tokens: [{ id: 0, content: "<pad>", special: true }, { id: 1, content: "</s>", special: true }], decoder: { type: "Metaspace", replacement: "▁" } };
    expect(tokenBytes(t5, "t.json").bytes.map(dec)).toEqual([null, null, " ", " true"]);
    // The first token's leading space (stripped by the decoder) is the one space the grammar allows.
    expect(accepts({ type: "boolean" }, " true")).toBe(true);
  });

  it("refuses decoders whose token text depends on the neighbours, naming the file", () => {
    expect(() => tokenBytes({ model: { type: "WordLevel", vocab: { a: 0 } }, decoder: null }, "m/tokenizer.json"))
      .toThrow(/^m\/tokenizer.json: constrained decoding needs .* got no decoder \(tokens are joined with spaces\)/);
    expect(() => tokenBytes({ model: { type: "WordPiece", vocab: { a: 0 } }, decoder: { type: "WordPiece", prefix: "##", cleanup: true } }, "t.json"))
      .toThrow(/WordPiece with cleanup/);
    expect(() => tokenBytes({ model: { type: "BPE", vocab: { a: 0 } }, decoder: { type: "CTC" } }, "t.json")).toThrow(/got CTC/);
  });
});

describe("token masks over a byte-level vocabulary", () => {
  const json = byteLevelTokenizer(96, { 95: "<|endoftext|>" }) as Record<string, unknown>;
  const { bytes, notFirst } = tokenBytes(json, "tokenizer.json");
  const vocabulary = { bytes, trie: buildTrie(bytes), kind: "byte-level", notFirst };
  const allowedAfter = (schema: unknown, text: string) => {
    const c = new JsonConstraint(compileJsonSchema(schema), vocabulary, [95]);
    const state = advanceBytes(initialState(compileJsonSchema(schema)), enc.encode(text));
    const allowed = new Uint8Array(96);
    c.allowedTokens(state, allowed);
    return allowed;
  };

  it("maps byte-level token strings back to bytes", () => {
    const dec = new TextDecoder();
    PIECES.forEach((p, id) => {
      const want = typeof p === "string" ? p : null;
      if (want !== null) expect(dec.decode(bytes[id]!)).toBe(want);
      else expect([...bytes[id]!]).toEqual(p);
    });
    expect(bytes[95]).toBeNull(); // the special token has no text
  });

  it("allows exactly the tokens that brute force over every token allows", () => {
    const cases: Array<[unknown, string]> = [
      [SCHEMAS.person, ""], [SCHEMAS.person, '{"name":"'], [SCHEMAS.person, '{"name":"a'],
      [SCHEMAS.person, '{"name":"Ann","age":3'], [SCHEMAS.nested, '{"id":1,"kind":'], [SCHEMAS.union, "[{\"a\":1"],
      [SCHEMAS.anyObject, '{"q":'], [SCHEMAS.strings, '{"s":"ab'], [SCHEMAS.numbers, "[1"], [{ type: "integer" }, "12"],
      // Inside strings (the per-class fast path): plain, after a backslash, inside \u, mid-character,
      // at maxLength - 1 and at maxLength, an extra key that must not repeat a listed one.
      [{ type: "string" }, '"'], [{ type: "string" }, '"a\\'], [{ type: "string" }, '"\\u00'], [{ type: "string" }, '"\\ud'],
      [SCHEMAS.person, '{"name":"0123456789a'], [SCHEMAS.person, '{"name":"0123456789ab'],
      [SCHEMAS.free, '{"a":"x","'], [SCHEMAS.free, '{"a":"x","b":1,"na'], [SCHEMAS.strings, '{"s":"'],
    ];
    for (const [schema, prefix] of cases) {
      const allowed = allowedAfter(schema, prefix);
      const state = advanceBytes(initialState(compileJsonSchema(schema)), enc.encode(prefix));
      for (let id = 0; id < 95; id++) {
        const want = bytes[id] ? advanceBytes(state, bytes[id]!).length > 0 : false;
        expect(allowed[id] === 1, `${prefix} + token ${id}`).toBe(want);
      }
      expect(allowed[95] === 1, `${prefix}: EOS`).toBe(canEnd(state));
    }
  });

  it("inside a string mid-character, only continuation bytes are allowed (fast path vs brute force)", () => {
    const root = compileJsonSchema({ type: "object", properties: { s: { type: "string", maxLength: 3 } }, required: ["s"] });
    const c = new JsonConstraint(root, vocabulary, [95]);
    for (const prefix of [[0xe6], [0xe6, 0x97], [0xf0], [0xf0, 0x9f, 0x98], [0x61, 0x62], [0x61, 0x62, 0x63]]) {
      const state = advanceBytes(initialState(root), Uint8Array.from([...enc.encode('{"s":"'), ...prefix]));
      expect(state.length).toBeGreaterThan(0);
      const allowed = new Uint8Array(96);
      c.allowedTokens(state, allowed);
      for (let id = 0; id < 95; id++) {
        const want = bytes[id] ? advanceBytes(state, bytes[id]!).length > 0 : false;
        expect(allowed[id] === 1, `${prefix} + token ${id}`).toBe(want);
      }
    }
  });

  it("splits multi-byte characters across tokens: a lead byte token is allowed in a string, not outside", () => {
    const leadC3 = PIECES.findIndex((p) => Array.isArray(p) && p.length === 1 && p[0] === 0xc3);
    const tailA9 = PIECES.findIndex((p) => Array.isArray(p) && p.length === 1 && p[0] === 0xa9);
    const inString = allowedAfter({ type: "string" }, '"');
    expect(inString[leadC3]).toBe(1);
    expect(inString[tailA9]).toBe(0);
    const c = new JsonConstraint(compileJsonSchema({ type: "string" }), vocabulary, [95]);
    const allowed = new Uint8Array(96);
    c.allowedTokens(advance(advance(initialState(compileJsonSchema({ type: "string" })), 0x22), 0xc3), allowed);
    expect(allowed[tailA9]).toBe(1);
    expect(allowed[leadC3]).toBe(0);
    expect(allowed[95]).toBe(0);
  });
});
