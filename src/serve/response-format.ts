// response_format {type: "json_object"} / {type: "json_schema", json_schema: {schema}}.
// NOT ENFORCED WHILE DECODING: constraining the output needs a logits mask at every step, which
// native generation does not take yet. What this does instead is honest checking: the schema is
// compiled when the request arrives (an unusable schema is a 400 before anything runs), and the
// finished output must parse as JSON and match it, or the request fails with a 400 that says the
// output did not satisfy response_format (code "response_format_not_satisfied"). Never is output
// that does not match handed back as if it did.
import { z } from "zod";
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
  if (format.type === "json_schema" && format.json_schema.schema) {
    try {
      validator = z.fromJSONSchema(format.json_schema.schema as Parameters<typeof z.fromJSONSchema>[0]);
    } catch (e) {
      throw badRequest(`response_format.json_schema.schema: cannot be used (${(e as Error).message})`, "response_format", "invalid_json_schema");
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

/** The 400 for output that failed its check (the message says decoding is not constrained). */
export function unsatisfiedFormat(problem: string, output: string): ApiError {
  const shown = output.length > 200 ? `${output.slice(0, 200)}…` : output;
  return badRequest(
    `response_format: ${problem}. This server checks the output against response_format but does not constrain ` +
    `decoding yet, so the model's free output did not satisfy it. Output: ${JSON.stringify(shown)}`,
    "response_format", "response_format_not_satisfied",
  );
}
