// Documents from the local disk: a folder of .txt/.md files (searched recursively), one such
// file, or a JSONL file whose rows carry the text in a field. Related documents are those a row
// links to (links field) when there are links, otherwise any other document of the collection.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { DocumentSource, RelatedQuery, SourceDocument } from "./document.js";
import { mentions } from "./text-match.js";
import { seededRandom, shuffled } from "../util/rng.js";
import { FileFormatError } from "../models/json-file.js";

export interface LocalDocumentsOptions {
  textField: string;
  titleField: string;
  idField: string;
  linksField: string;
  /** Characters of a document kept. */
  maxChars: number;
}

const textExtensions = new Set([".txt", ".md", ".markdown"]);

export class LocalDocuments implements DocumentSource {
  readonly name = "local";
  private readonly byId = new Map<string, SourceDocument>();
  private readonly byTitle = new Map<string, SourceDocument>();

  private constructor(readonly documents: SourceDocument[]) {
    for (const d of documents) {
      this.byId.set(d.id, d);
      if (!this.byTitle.has(d.title.toLowerCase())) this.byTitle.set(d.title.toLowerCase(), d);
    }
  }

  static load(location: string, options: LocalDocumentsOptions): LocalDocuments {
    let stat;
    try {
      stat = statSync(location);
    } catch {
      throw new FileFormatError(location, "not found (source.path: a folder of .txt/.md files, a .txt/.md file or a .jsonl file)");
    }
    let docs: SourceDocument[];
    if (stat.isDirectory()) {
      docs = listTextFiles(location).map((file) => textFileDocument(file, path.relative(location, file), options));
    } else if (/\.jsonl$/i.test(location)) {
      docs = readJsonlDocuments(location, options);
    } else if (textExtensions.has(path.extname(location).toLowerCase())) {
      docs = [textFileDocument(location, path.basename(location), options)];
    } else {
      throw new FileFormatError(location, "expected a folder, a .txt/.md file or a .jsonl file");
    }
    docs = docs.filter((d) => d.text.trim().length > 0);
    if (docs.length === 0) throw new FileFormatError(location, "holds no document with text");
    const ids = new Set<string>();
    for (const d of docs) {
      if (ids.has(d.id)) throw new FileFormatError(location, `document id "${d.id}" appears twice`);
      ids.add(d.id);
    }
    return new LocalDocuments(docs);
  }

  /** Ids of `count` documents in a seeded order (all of them, shuffled, when count ≥ the collection). */
  async sampleIds(count: number, seed: number): Promise<string[]> {
    return shuffled(this.documents.map((d) => d.id), seededRandom(seed)).slice(0, count);
  }

  async get(id: string): Promise<SourceDocument | undefined> {
    return this.byId.get(id);
  }

  async findRelated(doc: SourceDocument, query: RelatedQuery): Promise<SourceDocument | undefined> {
    let pool: SourceDocument[];
    if (doc.links?.length) {
      pool = doc.links.map((l) => this.byId.get(l) ?? this.byTitle.get(l.toLowerCase())).filter((d): d is SourceDocument => d !== undefined);
    } else {
      pool = this.documents;
    }
    pool = pool.filter((d) => d.id !== doc.id);
    const phrase = query.mention.trim().toLowerCase();
    const exact = pool.filter((d) => d.title.toLowerCase() === phrase);
    const rest = shuffled(pool.filter((d) => d.title.toLowerCase() !== phrase), seededRandom(query.seed));
    return [...exact, ...rest].slice(0, query.maxCandidates).find((d) => mentions(d.text, query.mention));
  }
}

function listTextFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith(".")) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listTextFiles(full));
    else if (entry.isFile() && textExtensions.has(path.extname(entry.name).toLowerCase())) out.push(full);
  }
  return out;
}

/** A text file's title is its first Markdown heading, else its file name without extension. */
function textFileDocument(file: string, id: string, options: LocalDocumentsOptions): SourceDocument {
  const text = readFileSync(file, "utf8");
  const heading = /^#{1,6}\s+(.+?)\s*#*\s*$/m.exec(text);
  const title = heading?.[1] ?? path.basename(file, path.extname(file));
  return { id: id.split(path.sep).join("/"), title, text: text.slice(0, options.maxChars) };
}

function readJsonlDocuments(file: string, options: LocalDocumentsOptions): SourceDocument[] {
  const docs: SourceDocument[] = [];
  const lines = readFileSync(file, "utf8").split(/\r?\n/);
  lines.forEach((line, index) => {
    if (!line.trim()) return;
    const where = `${file}:${index + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new FileFormatError(where, `is not valid JSON (${(e as Error).message})`);
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) throw new FileFormatError(where, "expected a JSON object per line");
    const r = row as Record<string, unknown>;
    const text = r[options.textField];
    if (typeof text !== "string") {
      throw new FileFormatError(where, `field "${options.textField}": expected a string (source.text_field), got ${text === undefined ? "nothing" : typeof text}`);
    }
    const id = r[options.idField];
    const title = r[options.titleField];
    const links = r[options.linksField];
    if (links !== undefined && !(Array.isArray(links) && links.every((l) => typeof l === "string"))) {
      throw new FileFormatError(where, `field "${options.linksField}": expected an array of strings (ids or titles of related rows)`);
    }
    const doc: SourceDocument = {
      id: typeof id === "string" || typeof id === "number" ? String(id) : `line-${index + 1}`,
      title: typeof title === "string" ? title : `line ${index + 1}`,
      text: text.slice(0, options.maxChars),
    };
    if (typeof r.url === "string") doc.url = r.url;
    if (links) doc.links = links as string[];
    docs.push(doc);
  });
  return docs;
}
