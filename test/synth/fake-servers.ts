// Loopback servers for the synth tests: a MediaWiki Action API that answers in the real
// formatversion=2 response shapes (list=random, prop=extracts, prop=links with continuation,
// normalized titles, the maxlag error) over pages the test writes, and an OpenAI-compatible
// chat-completions server whose replies the test scripts (content, HTTP errors, hangs, bad bodies).
import http from "node:http";
import type { AddressInfo } from "node:net";

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (data += c));
    req.on("end", () => resolve(data));
    req.on("error", reject);
  });
}

// ---------------------------------------------------------------- MediaWiki

export interface WikiPage {
  title: string;
  text: string;
  links?: string[];
}

export interface WikiServerOptions {
  /** The first N requests get the maxlag error (HTTP 200, Retry-After). */
  maxlagFailures?: number;
  retryAfterS?: number;
  /** The first N requests get HTTP 503. */
  unavailableFailures?: number;
  /** Links per response before `continue` (MediaWiki's pllimit; small to exercise continuation). */
  linksPerPage?: number;
  /** Milliseconds before each answer. */
  delayMs?: number;
}

export interface WikiServer {
  apiUrl: string;
  requests: URL[];
  userAgents: string[];
  maxInFlight: number;
  close(): Promise<void>;
}

/** The intro of a page: the text before the first blank line (our pages' "first section"). */
function intro(text: string): string {
  return text.split(/\n\n/)[0]!;
}

export async function startWikiServer(pages: WikiPage[], options: WikiServerOptions = {}): Promise<WikiServer> {
  const byTitle = new Map(pages.map((p, i) => [p.title, { ...p, pageid: 1000 + i }]));
  let randomCursor = 0;
  let inFlight = 0;
  const state: WikiServer = { apiUrl: "", requests: [], userAgents: [], maxInFlight: 0, close: async () => close(server) };
  const server = http.createServer(async (req, res) => {
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    try {
      const url = new URL(req.url!, "http://x");
      state.requests.push(url);
      state.userAgents.push(req.headers["user-agent"] ?? "");
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      const n = state.requests.length;
      const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
        res.end(JSON.stringify(body));
      };
      if (n <= (options.unavailableFailures ?? 0)) {
        res.writeHead(503, { "content-type": "text/html" });
        res.end("<html>Service Unavailable</html>");
        return;
      }
      if (n <= (options.unavailableFailures ?? 0) + (options.maxlagFailures ?? 0)) {
        json(200, {
          error: { code: "maxlag", info: "Waiting for 10.64.0.1: 7 seconds lagged.", host: "10.64.0.1", lag: 7, type: "db",
            docref: "See https://en.wikipedia.org/w/api.php for API usage." },
          servedby: "mw-api-ext.test",
        }, { "retry-after": String(options.retryAfterS ?? 1), "x-database-lag": "7" });
        return;
      }
      const p = url.searchParams;
      if (p.get("action") !== "query" || p.get("format") !== "json" || p.get("formatversion") !== "2") {
        json(200, { error: { code: "badvalue", info: "expected action=query&format=json&formatversion=2" } });
        return;
      }
      if (p.get("list") === "random") {
        const limit = Number(p.get("rnlimit") ?? 1);
        const random = [];
        for (let i = 0; i < limit; i++) {
          const page = pages[randomCursor++ % pages.length]!;
          random.push({ id: byTitle.get(page.title)!.pageid, ns: 0, title: page.title });
        }
        json(200, { batchcomplete: true, continue: { rncontinue: "0.559|0.559|0|0", continue: "-||" }, query: { random } });
        return;
      }
      const titles = (p.get("titles") ?? "").split("|").filter(Boolean);
      // Title normalisation as MediaWiki does it for the first letter.
      const normalized = titles.filter((t) => t[0] !== t[0]!.toUpperCase()).map((t) => ({ fromencoded: false, from: t, to: t[0]!.toUpperCase() + t.slice(1) }));
      const canonical = titles.map((t) => t[0]!.toUpperCase() + t.slice(1));
      const query: Record<string, unknown> = normalized.length ? { normalized } : {};
      if (p.get("prop") === "extracts") {
        if (p.get("explaintext") !== "1") return json(200, { error: { code: "test", info: "the test server only serves explaintext" } });
        const introOnly = p.get("exintro") === "1";
        if (!introOnly && titles.length > 1) {
          query.pages = canonical.map((title, i) => (i === 0 && byTitle.has(title)
            ? { pageid: byTitle.get(title)!.pageid, ns: 0, title, extract: byTitle.get(title)!.text }
            : byTitle.has(title) ? { pageid: byTitle.get(title)!.pageid, ns: 0, title } : { ns: 0, title, missing: true }));
          return json(200, { batchcomplete: true, warnings: { extracts: { warnings: "\"exlimit\" was too large for a whole article extracts request, lowered to 1." } }, query });
        }
        query.pages = canonical.map((title) => {
          const page = byTitle.get(title);
          if (!page) return { ns: 0, title, missing: true };
          return { pageid: page.pageid, ns: 0, title, extract: introOnly ? intro(page.text) : page.text };
        });
        return json(200, { batchcomplete: true, query });
      }
      if (p.get("prop") === "links") {
        const title = canonical[0]!;
        const page = byTitle.get(title);
        if (!page) return json(200, { batchcomplete: true, query: { ...query, pages: [{ ns: 0, title, missing: true }] } });
        const per = options.linksPerPage ?? 500;
        const links = page.links ?? [];
        const from = p.get("plcontinue") ? links.indexOf(p.get("plcontinue")!.split("|")[2]!) : 0;
        const chunk = links.slice(from, from + per);
        const more = from + per < links.length;
        const body: Record<string, unknown> = {
          query: { ...query, pages: [{ pageid: page.pageid, ns: 0, title, links: chunk.map((t) => ({ ns: 0, title: t })) }] },
        };
        if (more) body.continue = { plcontinue: `${page.pageid}|0|${links[from + per]}`, continue: "||" };
        else body.batchcomplete = true;
        return json(200, body);
      }
      json(200, { error: { code: "badvalue", info: `unsupported request ${url.search}` } });
    } finally {
      inFlight--;
    }
  });
  state.apiUrl = `${await listen(server)}/w/api.php`;
  return state;
}

// ---------------------------------------------------------------- OpenAI-compatible

export interface ChatBody {
  model: string;
  messages: { role: string; content: string }[];
  max_tokens?: number;
  temperature?: number;
  seed?: number;
  response_format?: { type: string; json_schema?: { name: string; schema: unknown } };
}

export type Reply =
  | { content: string; delayMs?: number; finishReason?: string }
  | { status: number; body?: unknown; headers?: Record<string, string>; delayMs?: number }
  | { hang: true }
  | { raw: string };

export interface ChatServer {
  url: string;
  bodies: ChatBody[];
  maxInFlight: number;
  close(): Promise<void>;
}

export async function startChatServer(reply: (body: ChatBody, index: number) => Reply | Promise<Reply>): Promise<ChatServer> {
  let inFlight = 0;
  const state: ChatServer = { url: "", bodies: [], maxInFlight: 0, close: async () => close(server) };
  const server = http.createServer(async (req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}`, type: "invalid_request_error" } }));
      return;
    }
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    try {
      const body = JSON.parse(await readBody(req)) as ChatBody;
      const index = state.bodies.push(body) - 1;
      let r: Reply;
      try {
        r = await reply(body, index);
      } catch (e) {
        // A script error becomes a 400 the test sees, not a hung request.
        r = { status: 400, body: { error: { message: `test script: ${(e as Error).message}` } } };
      }
      if ("hang" in r) {
        await new Promise<void>((resolve) => req.socket.once("close", () => resolve()));
        return;
      }
      if ("delayMs" in r && r.delayMs) await new Promise((resolve) => setTimeout(resolve, r.delayMs));
      if ("raw" in r) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(r.raw);
        return;
      }
      if ("status" in r) {
        res.writeHead(r.status, { "content-type": "application/json", ...r.headers });
        res.end(JSON.stringify(r.body ?? { error: { message: `scripted ${r.status}`, type: "server_error" } }));
        return;
      }
      const promptTokens = body.messages.reduce((n, m) => n + m.content.split(/\s+/).length, 0);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        id: `chatcmpl-${index}`, object: "chat.completion", created: 1700000000, model: body.model,
        choices: [{ index: 0, message: { role: "assistant", content: r.content }, finish_reason: r.finishReason ?? "stop" }],
        usage: { prompt_tokens: promptTokens, completion_tokens: r.content.split(/\s+/).length, total_tokens: 0 },
      }));
    } finally {
      inFlight--;
    }
  });
  state.url = `${await listen(server)}/v1`;
  return state;
}

/** The prompt of a request: its first user message (a corrective retry appends more). */
export function userText(body: ChatBody): string {
  return body.messages.find((m) => m.role === "user")?.content ?? "";
}

/** The schema name a request asked for (undefined for free text). */
export function schemaName(body: ChatBody): string | undefined {
  return body.response_format?.json_schema?.name;
}
