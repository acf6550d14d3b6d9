// A JSON schema compiled to the small grammar the constrained decoder walks (json-recognizer.ts).
// The subset is what structured-output users rely on (OpenAI's strict mode, llama.cpp's
// json_schema, vLLM's guided_json): object (properties in the order listed, required,
// additionalProperties), array (items, minItems, maxItems), string (minLength, maxLength),
// number, integer, boolean, null, enum and const of any JSON value, anyOf / oneOf, a list of
// types (["string", "null"]) and non-recursive $ref into $defs / definitions. A keyword outside
// it is an error naming the keyword (never silently ignored), except the ones that only narrow a
// value (NARROWING_ONLY): decoding goes without them and the caller validates the finished output.
// Choices the decoder makes where the schema leaves freedom (documented in the README):
// - additionalProperties absent means false when properties are listed (as OpenAI's strict mode
//   and xgrammar do), any value when none are ({type: "object"} alone is any object);
// - properties come in the order listed (optional ones may be skipped); extra properties, when
//   allowed, come after them (once no required one is left) and never repeat a listed name;
// - properties/items without a type imply type object/array;
// - oneOf is decoded as anyOf (exclusivity is left to the validation afterwards);
// - string lengths count code points (as JSON Schema and zod do); \u escapes of UTF-16
//   surrogates are not written (characters beyond the BMP come as UTF-8);
// - no whitespace outside strings (compact JSON) except one optional leading space.

/** The grammar. Nodes may be shared (a $ref used twice), never cyclic except ANY. */
export type SchemaNode =
  | { kind: "object"; props: PropertyNode[]; additional: SchemaNode | null }
  | { kind: "array"; items: SchemaNode; minItems: number; maxItems: number }
  | { kind: "string"; minLength: number; maxLength: number }
  | { kind: "number"; integer: boolean }
  /** One of these exact JSON texts (compact JSON.stringify of enum / const values, true/false/null). */
  | { kind: "literal"; texts: string[] }
  | { kind: "anyOf"; options: SchemaNode[] };

export interface PropertyNode {
  key: string;
  schema: SchemaNode;
  required: boolean;
}

/** Any JSON value (the values of a json_object, additionalProperties: true, items: {}). */
export const ANY: SchemaNode = { kind: "anyOf", options: [] };
const ANY_OBJECT: SchemaNode = { kind: "object", props: [], additional: ANY };
(ANY as { options: SchemaNode[] }).options.push(
  ANY_OBJECT,
  { kind: "array", items: ANY, minItems: 0, maxItems: Infinity },
  { kind: "string", minLength: 0, maxLength: Infinity },
  { kind: "number", integer: false },
  { kind: "literal", texts: ["true", "false", "null"] },
);

/** response_format {type: "json_object"}: any JSON object. */
export const JSON_OBJECT: SchemaNode = ANY_OBJECT;

/** Keywords that only describe. */
const ANNOTATIONS = new Set([
  "$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
  "$defs", "definitions", // read where $ref points into them
]);

/** Keywords that only narrow a value the grammar already allows: decoded without, validated after. */
export const NARROWING_ONLY = new Set([
  "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems",
  "minProperties", "maxProperties",
]);

const SUPPORTED = new Set([
  "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength",
  "enum", "const", "anyOf", "oneOf", "$ref", "strict",
]);

/** The subset, in words, for errors and the README. */
export const SUPPORTED_SUBSET =
  "type (object, array, string, number, integer, boolean, null, or a list of them), properties, required, " +
  "additionalProperties (false, true or a schema), items, minItems, maxItems, minLength, maxLength, enum, const, " +
  "anyOf, oneOf, $ref to #/$defs/... or #/definitions/... (not recursive); decoded without but validated after: " +
  [...NARROWING_ONLY].join(", ");

/** A schema the decoder cannot follow; `path` is a JSON pointer into it. */
export class UnsupportedSchemaError extends Error {
  readonly code = "S2S_ARGUMENT";
  constructor(readonly path: string, readonly keyword: string | undefined, detail: string) {
    super(`JSON schema${path ? ` at ${path}` : ""}: ${detail}`);
    this.name = "UnsupportedSchemaError";
  }
}

/** Digits a number may have while decoding (integer part, fraction, exponent): every such number is a finite double. */
export const NUMBER_DIGITS = { integer: 16, fraction: 16, exponent: 2 } as const;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function count(v: unknown, path: string, keyword: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new UnsupportedSchemaError(path, keyword, `${keyword}: expected an integer >= 0, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Compact JSON text of an enum / const value, as the decoder will write it. */
function literalText(v: unknown, path: string): string {
  const text = JSON.stringify(v as Json);
  if (text === undefined || (typeof v === "number" && !Number.isFinite(v))) {
    throw new UnsupportedSchemaError(path, undefined, `${JSON.stringify(String(v))} is not a JSON value`);
  }
  return text;
}

const TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"] as const;
type TypeName = (typeof TYPES)[number];

/** Compiles a JSON schema (the document root) to the decoder's grammar; throws UnsupportedSchemaError. */
export function compileJsonSchema(schema: unknown): SchemaNode {
  if (!isObject(schema) && typeof schema !== "boolean") {
    throw new UnsupportedSchemaError("", undefined, `expected a JSON schema object, got ${JSON.stringify(schema)}`);
  }
  const root = schema;
  const resolving = new Set<string>();
  const resolved = new Map<string, SchemaNode>();

  function ref(target: unknown, path: string): SchemaNode {
    if (typeof target !== "string") throw new UnsupportedSchemaError(path, "$ref", "$ref: expected a string");
    const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(target);
    if (!m || !isObject(root)) {
      throw new UnsupportedSchemaError(path, "$ref", `$ref ${JSON.stringify(target)}: only #/$defs/<name> and #/definitions/<name> are supported`);
    }
    const name = m[2]!.replace(/~1/g, "/").replace(/~0/g, "~");
    const defs = root[m[1]!];
    if (!isObject(defs) || !(name in defs)) {
      throw new UnsupportedSchemaError(path, "$ref", `$ref ${JSON.stringify(target)}: no such definition`);
    }
    const done = resolved.get(target);
    if (done) return done;
    if (resolving.has(target)) {
      throw new UnsupportedSchemaError(path, "$ref", `$ref ${JSON.stringify(target)} is recursive; recursive schemas are not supported`);
    }
    resolving.add(target);
    const node = compile(defs[name], `/${m[1]}/${m[2]}`);
    resolving.delete(target);
    resolved.set(target, node);
    return node;
  }

  function compile(s: unknown, path: string): SchemaNode {
    if (s === true) return ANY;
    if (s === false) throw new UnsupportedSchemaError(path, undefined, "the schema false allows no value");
    if (!isObject(s)) throw new UnsupportedSchemaError(path, undefined, `expected a schema object, got ${JSON.stringify(s)}`);
    for (const key of Object.keys(s)) {
      if (!ANNOTATIONS.has(key) && !NARROWING_ONLY.has(key) && !SUPPORTED.has(key)) {
        throw new UnsupportedSchemaError(path, key, `keyword "${key}" is not supported by constrained decoding (supported: ${SUPPORTED_SUBSET})`);
      }
    }
    const keys = Object.keys(s).filter((k) => SUPPORTED.has(k) && k !== "strict");
    if (s.$ref !== undefined) {
      if (keys.length > 1) {
        throw new UnsupportedSchemaError(path, "$ref", `$ref with other keywords (${keys.filter((k) => k !== "$ref").join(", ")}) is not supported`);
      }
      return ref(s.$ref, `${path}/$ref`);
    }
    const union = s.anyOf !== undefined ? "anyOf" : s.oneOf !== undefined ? "oneOf" : undefined;
    if (union) {
      if (keys.length > 1) {
        throw new UnsupportedSchemaError(path, union, `${union} with other keywords (${keys.filter((k) => k !== union).join(", ")}) is not supported; move them into each alternative`);
      }
      const list = s[union];
      if (!Array.isArray(list) || list.length === 0) throw new UnsupportedSchemaError(path, union, `${union}: expected a non-empty array of schemas`);
      return { kind: "anyOf", options: list.map((x, i) => compile(x, `${path}/${union}/${i}`)) };
    }
    if (s.const !== undefined || s.enum !== undefined) {
      const values = s.const !== undefined ? [s.const] : s.enum;
      if (!Array.isArray(values) || values.length === 0) throw new UnsupportedSchemaError(path, "enum", "enum: expected a non-empty array");
      return { kind: "literal", texts: [...new Set(values.map((v, i) => literalText(v, `${path}/enum/${i}`)))] };
    }
    let types: TypeName[];
    if (s.type === undefined) {
      if (s.properties !== undefined || s.required !== undefined || s.additionalProperties !== undefined) types = ["object"];
      else if (s.items !== undefined || s.minItems !== undefined || s.maxItems !== undefined) types = ["array"];
      else if (s.minLength !== undefined || s.maxLength !== undefined) types = ["string"];
      else return ANY;
    } else {
      const list = Array.isArray(s.type) ? s.type : [s.type];
      if (list.length === 0) throw new UnsupportedSchemaError(path, "type", "type: expected a type name or a non-empty list of them");
      for (const t of list) {
        if (!TYPES.includes(t as TypeName)) {
          throw new UnsupportedSchemaError(path, "type", `type: expected one of ${TYPES.join(", ")}, got ${JSON.stringify(t)}`);
        }
      }
      types = [...new Set(list as TypeName[])];
    }
    const nodes = types.map((t) => typed(t, s, path));
    return nodes.length === 1 ? nodes[0]! : { kind: "anyOf", options: nodes };
  }

  function typed(t: TypeName, s: Record<string, unknown>, path: string): SchemaNode {
    switch (t) {
      case "null": return { kind: "literal", texts: ["null"] };
      case "boolean": return { kind: "literal", texts: ["true", "false"] };
      case "number": return { kind: "number", integer: false };
      case "integer": return { kind: "number", integer: true };
      case "string": {
        const minLength = s.minLength === undefined ? 0 : count(s.minLength, path, "minLength");
        const maxLength = s.maxLength === undefined ? Infinity : count(s.maxLength, path, "maxLength");
        if (minLength > maxLength) throw new UnsupportedSchemaError(path, "minLength", `minLength ${minLength} > maxLength ${maxLength}`);
        return { kind: "string", minLength, maxLength };
      }
      case "array": {
        const minItems = s.minItems === undefined ? 0 : count(s.minItems, path, "minItems");
        const maxItems = s.maxItems === undefined ? Infinity : count(s.maxItems, path, "maxItems");
        if (minItems > maxItems) throw new UnsupportedSchemaError(path, "minItems", `minItems ${minItems} > maxItems ${maxItems}`);
        if (Array.isArray(s.items)) throw new UnsupportedSchemaError(path, "items", "items as an array (tuple validation) is not supported");
        const items = s.items === undefined ? ANY : compile(s.items, `${path}/items`);
        return { kind: "array", items, minItems, maxItems };
      }
      case "object": {
        const properties = s.properties ?? {};
        if (!isObject(properties)) throw new UnsupportedSchemaError(path, "properties", "properties: expected an object");
        const required = s.required ?? [];
        if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) {
          throw new UnsupportedSchemaError(path, "required", "required: expected an array of property names");
        }
        for (const r of required) {
          if (!(r in properties)) {
            throw new UnsupportedSchemaError(path, "required", `required names "${r}", which is not among properties (listed properties are all the decoder can write)`);
          }
        }
        const props = Object.entries(properties).map(([key, sub]) => ({
          key,
          schema: compile(sub, `${path}/properties/${key.replace(/~/g, "~0").replace(/\//g, "~1")}`),
          required: required.includes(key),
        }));
        const ap = s.additionalProperties;
        // Absent: false where properties are listed (strict mode), any value where none are
        // ({type: "object"} alone is any object).
        const additional = ap === false || (ap === undefined && s.properties !== undefined)
          ? null
          : ap === undefined ? ANY : compile(ap, `${path}/additionalProperties`);
        return { kind: "object", props, additional };
      }
    }
  }

  return compile(schema, "");
}
