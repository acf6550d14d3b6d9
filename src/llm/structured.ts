// JSON output that follows a zod schema: the schema goes to the server as response_format (where
// supported), and the answer is validated here anyway — parsed leniently (json-repair.ts),
// optionally fixed by a task-specific hook, then checked with zod. An answer that still fails is
// sent back once (by default) with the error so the model can correct it; after that the output
// is rejected with a reason: "invalid_json" or "schema_mismatch".
import { z } from "zod";
import { parseJsonLenient, type RepairRule } from "./json-repair.js";
import { addUsage, noUsage, type CompletionRequest, type LlmBackend, type TokenUsage } from "./types.js";

export type StructuredRejection = "invalid_json" | "schema_mismatch";

export class StructuredOutputError extends Error {
  readonly code = "S2S_LLM_OUTPUT";
  constructor(readonly reason: StructuredRejection, message: string, readonly raw: string, readonly usage: TokenUsage) {
    super(message);
    this.name = "StructuredOutputError";
  }
}

export interface StructuredOptions<T> {
  /** Name of the schema in response_format. */
  name: string;
  schema: z.ZodType<T>;
  /** Corrective round trips after an invalid answer (default 1). */
  repairRetries?: number;
  /**
   * Task-specific repair of the parsed value before validation (for example adding entities a
   * relation names but the entity list lacks). Returns the value and the rules it applied.
   */
  fix?: (value: unknown, context: { repairs: readonly RepairRule[] }) => { value: unknown; repairs: string[] };
}

export interface StructuredResult<T> {
  value: T;
  /** Repair rules applied to the accepted answer. */
  repairs: string[];
  /** Completions requested (1 + corrective retries used). */
  calls: number;
  usage: TokenUsage;
  raw: string;
}

/** The JSON schema of a zod schema, as servers expect it in response_format. */
export function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const json = z.toJSONSchema(schema) as Record<string, unknown>;
  delete json.$schema;
  return json;
}

export async function completeStructured<T>(
  backend: LlmBackend,
  request: CompletionRequest,
  options: StructuredOptions<T>,
): Promise<StructuredResult<T>> {
  const jsonSchema = { name: options.name, schema: jsonSchemaOf(options.schema) };
  const retries = options.repairRetries ?? 1;
  let messages = request.messages;
  let usage = noUsage;
  for (let call = 1; ; call++) {
    const result = await backend.complete({ ...request, messages, jsonSchema });
    usage = addUsage(usage, result.usage);
    const checked = check(result.text, options);
    if (checked.ok) {
      return { value: checked.value, repairs: checked.repairs, calls: call, usage, raw: result.text };
    }
    if (call > retries) throw new StructuredOutputError(checked.reason, checked.message, result.text, usage);
    messages = [
      ...request.messages,
      { role: "assistant", content: result.text },
      { role: "user", content: `That answer cannot be used: ${checked.message}\nReply again with only the corrected JSON, nothing else.` },
    ];
  }
}

type Checked<T> =
  | { ok: true; value: T; repairs: string[] }
  | { ok: false; reason: StructuredRejection; message: string };

/** Parses, repairs and validates one answer (exported for tests and for re-checking stored output). */
export function check<T>(text: string, options: Pick<StructuredOptions<T>, "schema" | "fix">): Checked<T> {
  const parsed = parseJsonLenient(text);
  if (!parsed.ok) return { ok: false, reason: "invalid_json", message: `the output is not valid JSON (${parsed.error})` };
  const repairs: string[] = [...parsed.repairs];
  let value = parsed.value;
  if (options.fix) {
    const fixed = options.fix(value, { repairs: parsed.repairs });
    value = fixed.value;
    repairs.push(...fixed.repairs);
  }
  const result = options.schema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.length ? issue.path.join(".") : "(top level)"}: ${issue.message}`);
    return { ok: false, reason: "schema_mismatch", message: `the JSON does not match the schema (${problems.join("; ")})` };
  }
  return { ok: true, value: result.data, repairs };
}
