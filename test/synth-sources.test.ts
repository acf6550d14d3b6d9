// Sources: the Wikipedia client against a loopback MediaWiki server that answers in the API's
// real response shapes (no network), and local documents (folders, JSONL) with their errors.
import { afterEach, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { WikipediaSource, MediaWikiApiError, type WikipediaOptions } from "../src/sources/wikipedia.js";
import { LocalDocuments } from "../src/sources/local-documents.js";
import { DiskCache } from "../src/sources/disk-cache.js";
import { mentions, replaceMention } from "../src/sources/text-match.js";
import { startWikiServer, type WikiPage, type WikiServer } from "./synth/fake-servers.js";

const pages: WikiPage[] = [
  { title: "Lake Varna", text: "Lake Varna is a freshwater lake in the Tessin Valley. It was first surveyed by Mira Kovac in 1871.\n\nHistory\nThe lake froze in 1901.",
    links: ["Mira Kovac", "Tessin Valley", "Glass Harbor", "Ostrel", "Pell Lighthouse"] },
  { title: "Mira Kovac", text: "Mira Kovac was a cartographer born in Ostrel.\n\nLater life\nKovac founded the Northern Survey Society.", links: ["Ostrel"] },
  { title: "Tessin Valley", text: "The Tessin Valley is a valley in the north.\n\nLakes\nIts largest lake is Lake Varna, mapped by Mira Kovac.", links: ["Lake Varna"] },
  { title: "Glass Harbor", text: "Glass Harbor is a port town.", links: [] },
  { title: "Ostrel", text: "Ostrel is a village known for its bells.", links: [] },
];

const servers: WikiServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function tmp(): string {
  return mkdtempSync(path.join(tmpdir(), "s2s-sources-"));
}

async function wiki(serverOptions: Parameters<typeof startWikiServer>[1] = {}, options: Partial<WikipediaOptions> = {}) {
  const server = await startWikiServer(pages, serverOptions);
  servers.push(server);
  const source = new WikipediaSource({
    apiUrl: server.apiUrl, userAgent: "s2s-train-tests/0.1 (tests@example.org)", maxlag: 5, concurrency: 2, maxRetries: 3,
    timeoutMs: 5000, maxChars: 10_000, baseDelayMs: 5, maxDelayMs: 2000, cacheDir: tmp(), ...options,
  });
  return { server, source };
}

describe("WikipediaSource", () => {
  it("sends the User-Agent, maxlag and formatversion=2 on every request", async () => {
    const { server, source } = await wiki();
    await source.get("Lake Varna");
    await source.links("Lake Varna");
    await source.sampleIds(2);
    expect(server.userAgents.every((ua) => ua === "s2s-train-tests/0.1 (tests@example.org)")).toBe(true);
    for (const url of server.requests) {
      expect(url.searchParams.get("maxlag")).toBe("5");
      expect(url.searchParams.get("format")).toBe("json");
      expect(url.searchParams.get("formatversion")).toBe("2");
    }
  });

  it("refuses a User-Agent that does not describe the tool", () => {
    expect(() => new WikipediaSource({ apiUrl: "http://127.0.0.1:1/w/api.php", userAgent: "bot", maxlag: 5, concurrency: 1, maxRetries: 0, timeoutMs: 1, maxChars: 1 }))
      .toThrow(/source.user_agent/);
  });

  it("reads random articles, plain-text extracts (cut to maxChars) and missing pages", async () => {
    const { source } = await wiki({}, { maxChars: 40 });
    const ids = await source.sampleIds(3);
    expect(new Set(ids).size).toBe(3);
    const doc = await source.get("Lake Varna");
    expect(doc).toMatchObject({ id: "Lake Varna", title: "Lake Varna", text: pages[0]!.text.slice(0, 40) });
    expect(doc!.url).toMatch(/\/wiki\/Lake_Varna$/);
    expect(await source.get("No Such Page")).toBeUndefined();
  });

  it("follows `continue` through an article's links", async () => {
    const { server, source } = await wiki({ linksPerPage: 2 });
    expect(await source.links("Lake Varna")).toEqual(pages[0]!.links);
    const linkRequests = server.requests.filter((u) => u.searchParams.get("prop") === "links");
    expect(linkRequests).toHaveLength(3);
    expect(linkRequests[1]!.searchParams.get("plcontinue")).toBe("1000|0|Glass Harbor");
  });

  it("reads intros 20 titles per request and maps normalised titles back", async () => {
    const { server, source } = await wiki();
    const titles = ["mira Kovac", "Ostrel", ...Array.from({ length: 20 }, (_, i) => `Missing ${i}`)];
    const intros = await source.intros(titles);
    expect(intros.get("mira Kovac")).toBe("Mira Kovac was a cartographer born in Ostrel.");
    expect(intros.get("Ostrel")).toBe("Ostrel is a village known for its bells.");
    expect(intros.size).toBe(2);
    expect(server.requests.filter((u) => u.searchParams.get("exintro") === "1")).toHaveLength(2);
  });

  it("finds a linked article that mentions the entity, preferring the entity's own article", async () => {
    const { source } = await wiki();
    const d1 = (await source.get("Lake Varna"))!;
    expect((await source.findRelated(d1, { mention: "Mira Kovac", maxCandidates: 10, seed: 1 }))!.title).toBe("Mira Kovac");
    // "Ostrel" is linked; its own article is the first candidate.
    expect((await source.findRelated(d1, { mention: "ostrel", maxCandidates: 10, seed: 1 }))!.title).toBe("Ostrel");
    expect(await source.findRelated(d1, { mention: "Northern Survey Society", maxCandidates: 10, seed: 1 })).toBeUndefined();
  });

  it("backs off on maxlag, honouring Retry-After, then succeeds", async () => {
    const { server, source } = await wiki({ maxlagFailures: 1, retryAfterS: 1 });
    const t0 = Date.now();
    const doc = await source.get("Ostrel");
    expect(doc?.title).toBe("Ostrel");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(server.requests).toHaveLength(2);
  });

  it("retries 503s with exponential backoff and gives up after max_retries", async () => {
    const ok = await wiki({ unavailableFailures: 2 });
    expect((await ok.source.get("Ostrel"))?.title).toBe("Ostrel");
    expect(ok.server.requests).toHaveLength(3);
    const down = await wiki({ unavailableFailures: 100 }, { maxRetries: 2 });
    await expect(down.source.get("Ostrel")).rejects.toThrow(/gave up after 3 attempts.*HTTP 503/);
  });

  it("reports other API errors by their code", async () => {
    const { source } = await wiki();
    // The test server answers an unsupported request with a badvalue error, as MediaWiki does.
    await expect((source as unknown as { api(p: Record<string, string>): Promise<unknown> }).api({ prop: "revisions", titles: "Ostrel" }))
      .rejects.toBeInstanceOf(MediaWikiApiError);
  });

  it("serves repeated requests from the disk cache, never list=random", async () => {
    const cacheDir = tmp();
    const { server, source } = await wiki({}, { cacheDir });
    await source.get("Mira Kovac");
    await source.get("Mira Kovac");
    await source.sampleIds(1);
    await source.sampleIds(1);
    expect(server.requests.filter((u) => u.searchParams.get("prop") === "extracts")).toHaveLength(1);
    expect(server.requests.filter((u) => u.searchParams.get("list") === "random")).toHaveLength(2);
    const files = readdirSync(cacheDir, { recursive: true }).map(String);
    expect(files.some((f) => f.endsWith(".json"))).toBe(true);
    expect(files.some((f) => f.includes(".tmp-"))).toBe(false);
    // A second client (a new process, say) on the same cache does not ask the server again.
    const before = server.requests.length;
    const second = new WikipediaSource({ apiUrl: server.apiUrl, userAgent: "s2s-train-tests/0.1 (tests@example.org)", maxlag: 5,
      concurrency: 1, maxRetries: 0, timeoutMs: 5000, maxChars: 10_000, cacheDir });
    expect((await second.get("Mira Kovac"))?.title).toBe("Mira Kovac");
    expect(server.requests.length).toBe(before);
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    const { server, source } = await wiki({ delayMs: 40 }, { concurrency: 2 });
    await Promise.all(pages.map((p) => source.get(p.title)));
    expect(server.maxInFlight).toBe(2);
  });
});

describe("DiskCache", () => {
  it("expires entries after the time-to-live", () => {
    const cache = new DiskCache(tmp(), 1000);
    cache.set("http://x/a", "body", 0);
    expect(cache.get("http://x/a", 500)).toBe("body");
    expect(cache.get("http://x/a", 2000)).toBeUndefined();
    expect(cache.get("http://x/b", 500)).toBeUndefined();
  });
});

describe("LocalDocuments", () => {
  const options = { textField: "text", titleField: "title", idField: "id", linksField: "links", maxChars: 1000 };

  it("reads a folder of .txt/.md files recursively, titles from headings or file names", async () => {
    const dir = tmp();
    mkdirSync(path.join(dir, "sub"));
    writeFileSync(path.join(dir, "a.md"), "# Lake Varna\n\nA lake surveyed by Mira Kovac.");
    writeFileSync(path.join(dir, "sub", "mira.txt"), "Mira Kovac was born in Ostrel.");
    writeFileSync(path.join(dir, "skip.pdf"), "binary");
    writeFileSync(path.join(dir, "empty.txt"), "   ");
    const docs = LocalDocuments.load(dir, options);
    expect(docs.documents.map((d) => [d.id, d.title])).toEqual([["a.md", "Lake Varna"], ["sub/mira.txt", "mira"]]);
    const related = await docs.findRelated(docs.documents[0]!, { mention: "mira kovac", maxCandidates: 10, seed: 1 });
    expect(related?.id).toBe("sub/mira.txt");
  });

  it("reads JSONL rows with configurable fields and follows their links", async () => {
    const file = path.join(tmp(), "docs.jsonl");
    writeFileSync(file, [
      JSON.stringify({ id: 1, title: "Lake Varna", body: "Surveyed by Mira Kovac.", links: ["Mira Kovac"] }),
      "",
      JSON.stringify({ id: 2, title: "Mira Kovac", body: "Mira Kovac was born in Ostrel." }),
      JSON.stringify({ id: 3, title: "Other", body: "Mira Kovac is mentioned here too." }),
    ].join("\n"));
    const docs = LocalDocuments.load(file, { ...options, textField: "body" });
    expect(docs.documents.map((d) => d.id)).toEqual(["1", "2", "3"]);
    const d1 = (await docs.get("1"))!;
    // Only linked rows are candidates when a row has links.
    for (let seed = 0; seed < 5; seed++) expect((await docs.findRelated(d1, { mention: "Mira Kovac", maxCandidates: 10, seed }))?.id).toBe("2");
    const ids = await docs.sampleIds(2, 7);
    expect(ids).toEqual(await docs.sampleIds(2, 7));
    expect((await docs.sampleIds(3, 7)).slice(0, 2)).toEqual(ids);
  });

  it("names the file, the line and the field when a row is bad", () => {
    const dir = tmp();
    const bad = path.join(dir, "bad.jsonl");
    writeFileSync(bad, '{"text": "fine"}\n{"text": 3}\n');
    expect(() => LocalDocuments.load(bad, options)).toThrow(`${bad}:2: field "text": expected a string (source.text_field), got number`);
    writeFileSync(bad, '{"text": "fine"}\n{oops\n');
    expect(() => LocalDocuments.load(bad, options)).toThrow(`${bad}:2: is not valid JSON`);
    expect(() => LocalDocuments.load(path.join(dir, "nope"), options)).toThrow(/not found/);
  });
});

describe("text matching", () => {
  it("matches whole words with Unicode letters, any case and spacing", () => {
    expect(mentions("He lived in Zürich for years", "zürich")).toBe(true);
    expect(mentions("He lived in Zürichsee", "Zürich")).toBe(false);
    expect(mentions("born in  New\nYork City", "new york")).toBe(true);
    expect(mentions("Newark", "New")).toBe(false);
    expect(mentions("costs $5 (approx.)", "$5 (approx.)")).toBe(true);
    expect(replaceMention("Where was Mira Kovac born?", "mira kovac", "[X]")).toBe("Where was [X] born?");
  });
});
