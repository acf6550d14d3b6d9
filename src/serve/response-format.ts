// response_format {type: "json_object"} / {type: "json_schema", json_schema: {schema}}.
// Decoding is constrained (src/constrain): every step allows only tokens that keep the output a
// prefix of compact JSON matching the schema, and the end of sequence only once it is complete.
// A schema outside the supported subset, or a tokenizer whose tokens' text cannot be known in
// isolation, is a 400 before anything runs. The finished output is still parsed and validated
// (zod) as a safety net: it can fail where max_tokens cut the JSON short, or on keywords decoding
// does not enforce (pattern, format, minimum, ...: see json-schema.ts), and then the request
// fails with a 400 saying why (code "response_format_not_satisfied"). Never is output that does
// not match handed back as if it did.
import { z } from "zod";
import { advanceBytes, canEnd, initialState } from "../constrain/json-recognizer.js";
import { compileJsonSchema, UnsupportedSchemaError } from "../constrain/json-schema.js";
import { loadTokenVocabulary, UnsupportedTokenizerError } from "../constrain/token-vocabulary.js";
import { badRequest, type ApiError } from "./api-error.js";

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name: string; schema?: Record<string, unknown> | undefined; strict?: boolean | null | undefined } };

export const responseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().min(1).max(64),
      description: z.string().optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

/** Checks one finished output; undefined when it satisfies the format. */
export type OutputCheck = (text: string) => string | undefined;

/** The check for a request's response_format (undefined for text); throws a 400 for a schema it cannot use. */
export function outputCheckFor(format: ResponseFormat | undefined): OutputCheck | undefined {
  if (!format || format.type === "text") return undefined;
  let validator: z.ZodType | undefined;
  let grammar: ReturnType<typeof compileJsonSchema> | undefined;
  if (format.type === "json_schema" && format.json_schema.schema) {
    try {
      validator = z.fromJSONSchema(withoutStructuredChoices(format.json_schema.schema) as Parameters<typeof z.fromJSONSchema>[0]);
    } catch (e) {
      throw badRequest(`response_format.json_schema.schema: cannot be used (${(e as Error).message})`, "response_format", "invalid_json_schema");
    }
    try {
      grammar = compileJsonSchema(format.json_schema.schema);
    } catch (e) {
      if (!(e instanceof UnsupportedSchemaError)) throw e;  // decodingSchemaFor answers it with a 400
    }
  }
  return (text) => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return `the output is not valid JSON (${(e as Error).message})`;
    }
    if (format.type === "json_object" && (value === null || typeof value !== "object" || Array.isArray(value))) {
      return "the output is JSON but not an object";
    }
    // The grammar decoding followed (enum and const compared by value, objects and arrays too).
    // The text checked is always the constrained decoder's own output, compact JSON with the
    // properties in the listed order, which is exactly what the grammar accepts...
    if (grammar && !canEnd(advanceBytes(initialState(grammar), new TextEncoder().encode(text)))) {
      return "the output does not match the schema (its grammar: properties, types, enum, const, lengths)";
    }
    // ...and zod for what decoding does not enforce (pattern, format, minimum, ...).
    if (validator) {
      const r = validator.safeParse(value);
      if (!r.success) {
        const where = r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(top level)"}: ${i.message}`);
        return `the output does not match the schema (${where.join("; ")})`;
      }
    }
    return undefined;
  };
}

/**
 * The JSON schema decoding is constrained to for this response_format (undefined for text):
 * json_object is {type: "object"} (any object), json_schema without a schema any JSON value.
 * A schema outside the supported subset, or a model whose tokenizer the constraint cannot map to
 * bytes, is a 400 naming what is wrong.
 */
export function decodingSchemaFor(format: ResponseFormat | undefined, modelDir: string): Record<string, unknown> | undefined {
  if (!format || format.type === "text") return undefined;
  const schema = format.type === "json_object" ? { type: "object" } : format.json_schema.schema ?? {};
  try {
    compileJsonSchema(schema);
  } catch (e) {
    if (!(e instanceof UnsupportedSchemaError)) throw e;
    throw badRequest(`response_format.json_schema.schema: ${e.message}`, "response_format", "unsupported_json_schema");
  }
  try {
    loadTokenVocabulary(modelDir);
  } catch (e) {
    if (!(e instanceof UnsupportedTokenizerError)) throw e;
    throw badRequest(`response_format needs constrained decoding, which this model's tokenizer does not allow: ${e.message}`,
      "response_format", "unsupported_tokenizer");
  }
  return schema;
}

/** The 400 for output that failed its check (decoding was constrained: the reasons left are few). */
export function unsatisfiedFormat(problem: string, output: string, finishReason?: string): ApiError {
  const shown = output.length > 200 ? `${output.slice(0, 200)}…` : output;
  const why = finishReason === "length"
    ? "max_tokens ended the output before the JSON was complete; raise max_tokens"
    : "decoding was constrained to the schema's structure, but not to the keywords it only validates afterwards " +
      "(pattern, format, minimum, maximum, multipleOf, uniqueItems, minProperties, maxProperties; oneOf exclusivity)";
  return badRequest(`response_format: ${problem}. ${why}. Output: ${JSON.stringify(shown)}`,
    "response_format", "response_format_not_satisfied");
}

/**
 * The schema without enum/const keywords that list an object or an array: zod's fromJSONSchema
 * compares those by identity, so it would refuse every parsed output. The grammar check above
 * compares them by value instead.
 */
export function withoutStructuredChoices(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutStructuredChoices);
  if (schema === null || typeof schema !== "object") return schema;
  const structured = (v: unknown) => v !== null && typeof v === "object";
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === "enum" && Array.isArray(value) && value.some(structured)) continue;
    if (key === "const" && structured(value)) continue;
    out[key] = withoutStructuredChoices(value);
  }
  return out;
}
