// Errors as OpenAI's API returns them: an HTTP status and {error: {message, type, param, code}},
// so OpenAI clients raise their usual exceptions (BadRequestError, NotFoundError, …).
import type { z } from "zod";

export type ApiErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After, Allow). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A request field that is wrong: 400 naming the field. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, "invalid_request_error", param, code);
}

/** Validates a request body with zod; a failure is a 400 listing every problem, `param` naming the first. */
export function parseRequest<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const fields = result.error.issues.map((issue) => ({
    field: issue.path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${String(p)}`)).join(""),
    message: issue.message,
  }));
  const listed = fields.map((f) => `${f.field || "(body)"}: ${f.message}`).join("; ");
  throw badRequest(`invalid request: ${listed}`, fields[0]?.field || null);
}

/** Any failure as an API error: ours as they are, bad settings and templates as 400s, the rest as 500s. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const code = (e as { code?: unknown })?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (code === "S2S_ARGUMENT" || code === "S2S_CHAT_TEMPLATE") return badRequest(message, null, "invalid_value");
  return new ApiError(500, `generation failed: ${message}`, "server_error", null, typeof code === "string" ? code : null);
}
