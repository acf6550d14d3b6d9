// JSON repair on a corpus of broken LLM outputs: each repair rule, each relation-specific repair,
// and each rejection reason.
import { describe, expect, it } from "vitest";
import { parseJsonLenient } from "../src/llm/json-repair.js";
import { check } from "../src/llm/structured.js";
import { extractionSchema, fixExtraction } from "../src/synth/relations.js";

describe("parseJsonLenient", () => {
  const cases: { name: string; text: string; value: unknown; repairs: string[] }[] = [
    { name: "valid JSON is untouched", text: ' {"a": [1, 2.5e3, -3], "b": null, "c": true} ', value: { a: [1, 2500, -3], b: null, c: true }, repairs: [] },
    { name: "code fence", text: '```json\n{"a": 1}\n```', value: { a: 1 }, repairs: ["code_fence"] },
    { name: "code fence without a language", text: '```\n[1, 2]\n```', value: [1, 2], repairs: ["code_fence"] },
    { name: "prose around the object", text: 'Here is the JSON you asked for: {"a": "x"} Let me know!', value: { a: "x" }, repairs: ["surrounding_text"] },
    { name: "single quotes", text: "{'name': 'Ada', 'said': 'it\\'s \"fine\"'}", value: { name: "Ada", said: 'it\'s "fine"' }, repairs: ["single_quotes"] },
    { name: "unquoted keys", text: '{name: "Ada", age: 36}', value: { name: "Ada", age: 36 }, repairs: ["unquoted_keys"] },
    { name: "Python literals", text: '{"a": True, "b": False, "c": None}', value: { a: true, b: false, c: null }, repairs: ["python_literals"] },
    { name: "raw newline in a string", text: '{"a": "line one\nline two"}', value: { a: "line one\nline two" }, repairs: ["control_characters"] },
    { name: "trailing commas", text: '{"a": [1, 2, ], "b": {"c": 1,},}', value: { a: [1, 2], b: { c: 1 } }, repairs: ["trailing_comma"] },
    { name: "truncated inside an array", text: '{"a": [1, 2, 3', value: { a: [1, 2, 3] }, repairs: ["truncated"] },
    { name: "truncated after a comma", text: '{"a": [1, 2,', value: { a: [1, 2] }, repairs: ["truncated"] },
    { name: "truncated inside a string", text: '{"a": "hello wor', value: { a: "hello wor" }, repairs: ["truncated"] },
    { name: "truncated after a key", text: '{"a": 1, "b":', value: { a: 1 }, repairs: ["truncated"] },
    { name: "truncated inside a key", text: '{"a": 1, "bee', value: { a: 1 }, repairs: ["truncated"] },
    { name: "truncated nested objects", text: '{"r": [{"x": 1}, {"y": [2, {"z": "w', value: { r: [{ x: 1 }, { y: [2, { z: "w" }] }] }, repairs: ["truncated"] },
    { name: "unicode escapes survive", text: "{'a': '\\u00e9t\\u00e9'}", value: { a: "été" }, repairs: ["single_quotes"] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = parseJsonLenient(c.text);
      expect(r.ok, r.ok ? "" : r.error).toBe(true);
      if (r.ok) {
        expect(r.value).toEqual(c.value);
        expect(r.repairs.sort()).toEqual(c.repairs.sort());
      }
    });
  }

  it("several rules at once", () => {
    const r = parseJsonLenient("Output:\n```json\n{'a': [True, 'x',], b: 'y\n'}\n```");
    expect(r.ok && r.value).toEqual({ a: [true, "x"], b: "y\n" });
    expect(r.repairs.sort()).toEqual(["code_fence", "control_characters", "python_literals", "single_quotes", "trailing_comma", "unquoted_keys"]);
  });

  it("rejects what no rule fixes, with the parser's message", () => {
    for (const text of ["I am sorry, I cannot do that.", '{"a" "b"}', "{\"a\": undefined}", '{"a": 1} {"b": 2}x{']) {
      const r = parseJsonLenient(text);
      if (text.startsWith('{"a": 1}')) {
        expect(r.ok && r.value).toEqual({ a: 1 });  // the first complete value wins
        continue;
      }
      expect(r.ok, text).toBe(false);
      if (!r.ok) expect(r.error.length).toBeGreaterThan(0);
    }
  });
});

describe("relation extraction JSON", () => {
  const good = {
    section_description: "How the survey began.",
    list_of_entities: ["Mira Kovac", "Lake Varna"],
    relations: [{ description: "Mira Kovac surveyed Lake Varna", source_entities: ["Mira Kovac"], target_entities: ["Lake Varna"], strength: "strong" }],
  };
  const run = (text: string) => check(text, { schema: extractionSchema, fix: fixExtraction });

  it("accepts a valid extraction as it is", () => {
    const r = run(JSON.stringify(good));
    expect(r.ok && r.value).toEqual(good);
    expect(r.ok && r.repairs).toEqual([]);
  });

  it("adds entities that relations name but the list lacks (missing_entities)", () => {
    const r = run(JSON.stringify({ ...good, list_of_entities: ["Mira Kovac"], relations: [...good.relations,
      { description: "d", source_entities: ["Ostrel"], target_entities: ["mira kovac"] }] }));
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.list_of_entities).toEqual(["Mira Kovac", "Lake Varna", "Ostrel"]);
      expect(r.repairs).toEqual(["missing_entities"]);
    }
  });

  it("drops the relation cut off by max_tokens (truncated_array) and closes the JSON", () => {
    const full = JSON.stringify({ ...good, relations: [...good.relations, { description: "second", source_entities: ["Lake Varna"], target_entities: ["Mira Kovac"] }] });
    const cut = full.slice(0, full.indexOf('"second"') + 20);  // inside the second relation's source_entities
    const r = run(cut);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.relations).toHaveLength(1);
      expect(r.repairs).toEqual(expect.arrayContaining(["truncated", "truncated_array"]));
    }
  });

  it("lower-cases the strength (strength_case)", () => {
    const r = run(JSON.stringify({ ...good, relations: [{ ...good.relations[0], strength: "Moderate" }] }));
    expect(r.ok && r.value.relations[0]!.strength).toBe("moderate");
    expect(r.ok && r.repairs).toEqual(["strength_case"]);
  });

  it("rejects with schema_mismatch: missing field, wrong type, empty entities, unknown strength", () => {
    const broken = [
      { list_of_entities: [], relations: [] },
      { ...good, relations: "none" },
      { ...good, relations: [{ description: "d", source_entities: [], target_entities: ["x"] }] },
      { ...good, relations: [{ ...good.relations[0], strength: "very strong" }] },
    ];
    for (const b of broken) {
      const r = run(JSON.stringify(b));
      expect(r.ok, JSON.stringify(b)).toBe(false);
      if (!r.ok) expect(r.reason).toBe("schema_mismatch");
    }
    const r = run(JSON.stringify({ ...good, relations: "none" }));
    expect(!r.ok && r.message).toContain("relations");
  });

  it("rejects with invalid_json when there is no JSON to repair", () => {
    const r = run("The section talks about a lake.");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe("invalid_json");
  });
});
