// A request's JSON body, read with a size limit: a Content-Length over the limit is refused before
// reading (413), and so is a body that grows past it while streaming in (chunked uploads).
// The body is parsed as JSON whatever its Content-Type says (curl -d sends a form type).
import type { IncomingMessage } from "node:http";
import { ApiError, badRequest } from "./api-error.js";

function tooLarge(limit: number): ApiError {
  return new ApiError(413, `request body too large: at most ${limit} bytes are accepted (see --max-body-bytes)`, "invalid_request_error", null, "request_too_large");
}

export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw badRequest("the request body is empty; expected a JSON object");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON (${(e as Error).message})`);
  }
}
