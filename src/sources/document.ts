// What a source gives the pipelines: documents with an id, a title, plain text and, where the
// source knows them, the titles or ids of related documents (a Wikipedia article's links).
export interface SourceDocument {
  id: string;
  title: string;
  text: string;
  url?: string;
  /** Related documents (ids or titles) when the source has links. */
  links?: string[];
}

export interface RelatedQuery {
  /** The related document must mention this (word-boundary, case-insensitive). */
  mention: string;
  /** Candidates to look at before giving up. */
  maxCandidates: number;
  /** Seed of the candidate order, so a rerun looks at the same candidates. */
  seed: number;
}

export interface DocumentSource {
  readonly name: string;
  /** `count` document ids to seed a job (random articles; or a seeded sample of a collection). */
  sampleIds(count: number, seed: number): Promise<string[]>;
  get(id: string): Promise<SourceDocument | undefined>;
  /** A document related to `doc` (linked from it where links exist) that mentions `query.mention`. */
  findRelated(doc: SourceDocument, query: RelatedQuery): Promise<SourceDocument | undefined>;
}
