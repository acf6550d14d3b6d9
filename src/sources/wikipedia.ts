// Wikipedia (any MediaWiki with the TextExtracts extension) through the MediaWiki Action API:
//   random articles   action=query&list=random&rnnamespace=0
//   plain-text text   action=query&prop=extracts&explaintext=1   (exintro=1 for up to 20 intros at once)
//   an article's links action=query&prop=links&plnamespace=0&pllimit=max, following `continue`
// Every request carries format=json&formatversion=2, a descriptive User-Agent and maxlag (the
// API's way to ask bots to back off when replicas lag: a 200 with error.code "maxlag" and a
// Retry-After header, retried here). Everything but list=random is cached on disk.
import type { DocumentSource, RelatedQuery, SourceDocument } from "./document.js";
import { HttpError, PoliteHttpClient, type RetryHint } from "./http-client.js";
import { DiskCache } from "./disk-cache.js";
import { mentions } from "./text-match.js";
import { parseRetryAfter } from "../util/sleep.js";
import { seededRandom, shuffled } from "../util/rng.js";

export interface WikipediaOptions {
  apiUrl: string;
  userAgent: string;
  /** Seconds of replication lag above which the API should refuse us (5 is Wikimedia's advice). */
  maxlag: number;
  concurrency: number;
  maxRetries: number;
  timeoutMs: number;
  /** Characters of an article kept (extracts can be 100k+ characters). */
  maxChars: number;
  cacheDir?: string;
  cacheTtlMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class MediaWikiApiError extends Error {
  readonly code = "S2S_MEDIAWIKI";
  constructor(readonly apiCode: string, info: string) {
    super(`MediaWiki API error ${apiCode}: ${info}`);
    this.name = "MediaWikiApiError";
  }
}

interface ApiPage {
  pageid?: number;
  ns?: number;
  title: string;
  missing?: boolean;
  invalid?: boolean;
  extract?: string;
  links?: { ns: number; title: string }[];
}

interface ApiResponse {
  batchcomplete?: boolean;
  continue?: Record<string, string>;
  error?: { code: string; info?: string; lag?: number };
  query?: {
    random?: { id: number; ns: number; title: string }[];
    pages?: ApiPage[];
    normalized?: { from: string; to: string }[];
    redirects?: { from: string; to: string }[];
  };
}

/** MediaWiki's maxlag refusal (HTTP 200, error.code "maxlag", Retry-After header). */
function maxlagHint(body: unknown, headers: Headers): RetryHint | undefined {
  const error = (body as ApiResponse).error;
  if (error?.code !== "maxlag") return undefined;
  const retryAfterMs = parseRetryAfter(headers.get("retry-after")) ?? (typeof error.lag === "number" ? error.lag * 1000 : 5000);
  return { retryAfterMs, why: `replication lag (${error.info ?? "maxlag"})` };
}

export class WikipediaSource implements DocumentSource {
  readonly name = "wikipedia";
  readonly http: PoliteHttpClient;

  constructor(private readonly options: WikipediaOptions) {
    if (!/\S+\/\S+/.test(options.userAgent)) {
      throw new Error(`source.user_agent: expected a descriptive User-Agent like "my-tool/1.0 (you@example.org)", got "${options.userAgent}"`);
    }
    this.http = new PoliteHttpClient({
      userAgent: options.userAgent,
      concurrency: options.concurrency,
      maxRetries: options.maxRetries,
      timeoutMs: options.timeoutMs,
      ...(options.baseDelayMs !== undefined ? { baseDelayMs: options.baseDelayMs } : {}),
      ...(options.maxDelayMs !== undefined ? { maxDelayMs: options.maxDelayMs } : {}),
      ...(options.cacheDir ? { cache: new DiskCache(options.cacheDir, options.cacheTtlMs) } : {}),
    });
  }

  private async api(params: Record<string, string>, cache = true): Promise<ApiResponse> {
    const url = new URL(this.options.apiUrl);
    const all = { action: "query", format: "json", formatversion: "2", maxlag: String(this.options.maxlag), ...params };
    for (const key of Object.keys(all).sort()) url.searchParams.set(key, all[key as keyof typeof all]);
    const body = (await this.http.getJson(url.toString(), { cache, retryHint: maxlagHint })) as ApiResponse;
    if (body.error) throw new MediaWikiApiError(body.error.code, body.error.info ?? "");
    return body;
  }

  /** `count` distinct random article titles (main namespace, no redirects). */
  async sampleIds(count: number): Promise<string[]> {
    const titles = new Set<string>();
    for (let round = 0; titles.size < count; round++) {
      if (round > 10 + count) throw new HttpError(`list=random returned too few distinct articles (${titles.size} of ${count})`);
      const body = await this.api({ list: "random", rnnamespace: "0", rnfilterredir: "nonredirects",
        rnlimit: String(Math.min(500, count - titles.size)) }, false);
      for (const page of body.query?.random ?? []) if (titles.size < count) titles.add(page.title);
    }
    return [...titles];
  }

  /** The article's plain text (at most maxChars), or undefined when there is no such page. */
  async get(title: string): Promise<SourceDocument | undefined> {
    const body = await this.api({ prop: "extracts", explaintext: "1", exsectionformat: "plain", redirects: "1", titles: title });
    const page = body.query?.pages?.[0];
    if (!page || page.missing || page.invalid || typeof page.extract !== "string") return undefined;
    return { id: page.title, title: page.title, text: page.extract.slice(0, this.options.maxChars), url: this.pageUrl(page.title) };
  }

  /** Intros (the text before the first section) of up to 20 titles per request. */
  async intros(titles: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < titles.length; i += 20) {
      const batch = titles.slice(i, i + 20);
      const body = await this.api({ prop: "extracts", exintro: "1", explaintext: "1", exlimit: "20", redirects: "1", titles: batch.join("|") });
      // Answers come under the canonical title; map them back to the titles we asked for.
      const canonical = new Map<string, string>();
      for (const t of batch) canonical.set(t, t);
      for (const step of [...(body.query?.normalized ?? []), ...(body.query?.redirects ?? [])]) {
        for (const [asked, current] of canonical) if (current === step.from) canonical.set(asked, step.to);
      }
      const byTitle = new Map((body.query?.pages ?? []).map((p) => [p.title, p]));
      for (const [asked, title] of canonical) {
        const extract = byTitle.get(title)?.extract;
        if (typeof extract === "string") out.set(asked, extract);
      }
    }
    return out;
  }

  /** Titles of main-namespace articles the article links to (at most `limit`). */
  async links(title: string, limit = 500): Promise<string[]> {
    const out: string[] = [];
    let next: Record<string, string> = {};
    for (;;) {
      const body = await this.api({ prop: "links", plnamespace: "0", pllimit: "max", redirects: "1", titles: title, ...next });
      for (const page of body.query?.pages ?? []) for (const link of page.links ?? []) out.push(link.title);
      if (!body.continue || out.length >= limit) break;
      next = body.continue;
    }
    return out.slice(0, limit);
  }

  /**
   * A linked article that mentions the phrase: the article titled like the phrase first (when
   * linked), then the other links in a seeded order, judged by their intros, at most
   * maxCandidates of them. Returns the whole (truncated) article.
   */
  async findRelated(doc: SourceDocument, query: RelatedQuery): Promise<SourceDocument | undefined> {
    const links = (await this.links(doc.title)).filter((t) => t !== doc.title);
    const phrase = query.mention.trim().toLowerCase();
    const exact = links.filter((t) => t.toLowerCase() === phrase);
    const rest = shuffled(links.filter((t) => t.toLowerCase() !== phrase), seededRandom(query.seed));
    const candidates = [...exact, ...rest].slice(0, query.maxCandidates);
    const intros = await this.intros(candidates);
    for (const title of candidates) {
      const intro = intros.get(title);
      if (intro !== undefined && (exact.includes(title) || mentions(intro, query.mention))) {
        const full = await this.get(title);
        if (full && mentions(full.text, query.mention)) return full;
      }
    }
    return undefined;
  }

  private pageUrl(title: string): string {
    const api = new URL(this.options.apiUrl);
    return `${api.origin}/wiki/${encodeURIComponent(title.replace(/ /g, "_"))}`;
  }
}
