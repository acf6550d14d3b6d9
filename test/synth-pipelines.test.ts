// The mhqa and relations pipelines end to end, in process: Wikipedia and local documents on
// loopback, a scripted OpenAI-compatible LLM, the SQLite job state, the JSONL output the trainer
// reads and synth/report.json. Also prompt assembly from (edited) prompt files.
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runSynth } from "../src/synth/run-synth.js";
import { loadSynthConfig } from "../src/synth/config.js";
import { PromptLibrary } from "../src/synth/prompts.js";
import { checkMhqaPrompts, reasoningChain, extractFinalAnswer, answerMarker } from "../src/synth/mhqa.js";
import { extractionSchema } from "../src/synth/relations.js";
import { dataConfigSchema } from "../src/data/config.js";
import { startChatServer, startWikiServer, userText, schemaName, type ChatServer, type WikiServer, type ChatBody } from "./synth/fake-servers.js";
import { mergeQuestions, mhqaResponder } from "./synth/scripted-llm.js";

const closers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((s) => s.close()));
});
const tmp = () => mkdtempSync(path.join(tmpdir(), "s2s-synth-"));
const readJsonl = (file: string) => readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

const wikiPages = [
  { title: "Lake Varna", text: "Lake Varna is a freshwater lake in the Tessin Valley. It was first surveyed by Mira Kovac in 1871.\n\nThe lake froze in 1901.",
    links: ["Mira Kovac", "Tessin Valley", "Glass Harbor"] },
  { title: "Mira Kovac", text: "Mira Kovac was a cartographer born in Ostrel.\n\nKovac founded the Northern Survey Society in 1880.", links: ["Ostrel", "Northern Survey Society"] },
  { title: "Glass Harbor", text: "Glass Harbor is a port town whose Pell Lighthouse guides ships through the fog.", links: ["Ostrel"] },
  { title: "Ostrel", text: "Ostrel is a village known for its bells and its summer fair.", links: [] },
  { title: "Tessin Valley", text: "The Tessin Valley is a valley in the north. Its largest lake is Lake Varna, mapped long ago.", links: ["Lake Varna"] },
  { title: "Short Page", text: "Tiny.", links: [] },
  { title: "Northern Survey Society", text: "The Northern Survey Society is a learned society that maps lakes and rivers.", links: ["Mira Kovac"] },
];

/** What the scripted model says for each D1 (entity + Q1) and each (D2, entity) (Q2 + answer). */
const mhqaScript = mhqaResponder({
  entityQ1(title) {
    switch (title) {
      case "Lake Varna": return JSON.stringify({ entity: "Mira Kovac", question: "Which explorer first surveyed Lake Varna in 1871?" });
      case "Glass Harbor": return JSON.stringify({ entity: "Pell Lighthouse", question: "What guides ships into Glass Harbor?" });
      case "Ostrel": return JSON.stringify({ entity: "Bell Foundry of Narn", question: "What is Ostrel known for?" });
      case "Tessin Valley": return '```json\n{"entity": "Lake Varna", "question": "Which is the largest lake of the Tessin Valley?",}\n```';
      case "Mira Kovac": return JSON.stringify({ entity: "Ostrel", question: "Where was the cartographer born?" });
      default: return "I would rather not.";
    }
  },
  q2(title, entity) {
    if (title === "Mira Kovac") return JSON.stringify({ question: `In which village was ${entity} born?`, answer: "Ostrel" });
    if (title === "Lake Varna") return JSON.stringify({ question: `Who first surveyed ${entity}?`, answer: "Carl Brandt" });
    throw new Error(`no Q2 scripted for ${title}/${entity}`);
  },
});

describe("s2s-train synth mhqa", () => {
  it("makes two-hop questions from Wikipedia and rejects the rest with named reasons", async () => {
    const wiki: WikiServer = await startWikiServer(wikiPages);
    const llm: ChatServer = await startChatServer(mhqaScript);
    closers.push(wiki, llm);
    const dir = tmp();
    const evalFile = path.join(dir, "eval.jsonl");
    writeFileSync(evalFile, JSON.stringify({ question: "Which village hosts a bell fair?", answer: "Ostrel" }) + "\n");
    const config = loadSynthConfig(undefined, {
      source: { type: "wikipedia", api_url: wiki.apiUrl, user_agent: "s2s-train-tests/0.1 (tests@example.org)", cache_dir: path.join(dir, "cache") },
      llm: { endpoints: [{ url: llm.url, model: "scripted", concurrency: 2 }] },
      mhqa: { count: 7, min_chars: 40, contamination: { eval_file: evalFile } },
    });
    const lines: string[] = [];
    const out = path.join(dir, "run");
    const summary = await runSynth({ task: "mhqa", config, out, progress: false, log: (l) => lines.push(l) });

    expect(summary.interrupted).toBe(false);
    const report = JSON.parse(readFileSync(path.join(out, "synth", "report.json"), "utf8"));
    expect(report.kept).toBe(1);
    expect(report.rejected).toEqual({
      answer_not_in_d2: 1, contaminated: 1, d1_too_short: 1, entity_not_in_d1: 1, invalid_json: 1, no_d2_mentions_entity: 1,
    });
    expect(report.stages.mhqa).toMatchObject({ items: 7, kept: 1, failed: 0, unfinished: 0 });
    expect(report.stages.mhqa.tokens.prompt).toBeGreaterThan(0);
    expect(lines.join("\n")).toMatch(/mhqa: 7 items, kept 1, rejected 6/);

    const rows = readJsonl(path.join(out, "synth", "data.jsonl"));
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    const q = mergeQuestions("Which explorer first surveyed Lake Varna in 1871?", "In which village was Mira Kovac born?", "Mira Kovac");
    expect(row).toMatchObject({
      input: q, question: q, answer: "Ostrel", entity: "Mira Kovac",
      q1: "Which explorer first surveyed Lake Varna in 1871?", q2: "In which village was Mira Kovac born?",
      d1: { id: "Lake Varna", title: "Lake Varna" }, d2: { id: "Mira Kovac", title: "Mira Kovac" },
    });
    expect(row.target).toBe([
      "Let's split the question into two simpler questions.",
      "Q1: Which explorer first surveyed Lake Varna in 1871?",
      "Q2: In which village was [answer to Q1] born?",
      "Answer to Q1: Mira Kovac",
      "Substituting it into Q2: In which village was Mira Kovac born?",
      "Answer to Q2: Ostrel",
      "So the answer is: Ostrel",
    ].join("\n"));
    // The trainer's data loader reads input/target by default.
    const data = dataConfigSchema.parse({ train_file: "data.jsonl" });
    expect(typeof row[data.input_field]).toBe("string");
    expect(typeof row[data.target_field]).toBe("string");

    const rejected = readJsonl(path.join(out, "synth", "rejected.jsonl"));
    expect(rejected.find((r) => r.reason === "contaminated")).toMatchObject({ id: "Mira Kovac", detail: "Ostrel" });
    expect(String(rejected.find((r) => r.reason === "invalid_json")!.detail)).toMatch(/^entity_q1: the output is not valid JSON/);
    // The fenced answer for Tessin Valley was repaired locally (one request); the unusable one got one corrective retry.
    const entityCalls = llm.bodies.filter((b) => schemaName(b) === "entity_q1");
    expect(entityCalls.filter((b) => userText(b).includes("Document title: Northern Survey Society"))).toHaveLength(2);
    expect(entityCalls.filter((b) => b.messages.some((m) => m.role === "assistant"))).toHaveLength(1);
    // Each request asked for schema-constrained JSON.
    expect(llm.bodies.every((b: ChatBody) => b.response_format?.type === "json_schema")).toBe(true);

    // A rerun on the finished folder does nothing again.
    const before = llm.bodies.length;
    const again = await runSynth({ task: "mhqa", config, out, progress: false, log: () => {} });
    expect(llm.bodies.length).toBe(before);
    expect(again.report.kept).toBe(1);
  });

  it("refuses to resume a folder made with another source or seed", async () => {
    const dir = tmp();
    const docs = path.join(dir, "docs.jsonl");
    writeFileSync(docs, JSON.stringify({ id: 1, text: "x" }) + "\n");
    const llm = await startChatServer(() => ({ content: "{}" }));
    closers.push(llm);
    const base = { source: { type: "local", path: docs }, llm: { endpoints: [{ url: llm.url }] }, mhqa: { count: 1 } };
    const out = path.join(dir, "run");
    await runSynth({ task: "mhqa", config: loadSynthConfig(undefined, base), out, progress: false, log: () => {} });
    await expect(runSynth({ task: "mhqa", config: loadSynthConfig(undefined, { ...base, mhqa: { count: 1, seed: 9 } }), out, progress: false, log: () => {} }))
      .rejects.toThrow(/holds a mhqa job made with other settings/);
  });
});

describe("prompt files", () => {
  it("assemble into chat messages with the document, and the chain has the paper's steps", () => {
    const prompts = new PromptLibrary();
    checkMhqaPrompts(prompts);
    const messages = prompts.render("mhqa-entity-q1", { title: "Lake Varna", document: "Lake Varna is a lake." });
    expect(messages[0]).toMatchObject({ role: "system" });
    expect(messages[1]!.role).toBe("user");
    expect(messages[1]!.content).toContain('"""\nLake Varna is a lake.\n"""');
    expect(messages[1]!.content).toContain('It must not be\nthe document\'s own subject ("Lake Varna")');
    const chain = reasoningChain(prompts, { question: "Q?", q1: "Who surveyed it?", q2: "Where was Mira Kovac born?", entity: "Mira Kovac", answer: "Ostrel" });
    expect(chain.split("\n")).toHaveLength(7);
    expect(answerMarker(prompts)).toBe("So the answer is:");
    expect(extractFinalAnswer(chain, "So the answer is:")).toBe("Ostrel");
    expect(extractFinalAnswer("no marker here", "So the answer is:")).toBe("no marker here");
  });

  it("can be overridden one file at a time, and a bad placeholder names the file", () => {
    const dir = tmp();
    writeFileSync(path.join(dir, "mhqa-merge.md"), "--- user\nMerge {{q1}} and {{q2}} around {{entity}}; JSON please.");
    const prompts = new PromptLibrary(dir);
    expect(prompts.render("mhqa-merge", { q1: "A?", q2: "B?", entity: "E" })).toEqual([{ role: "user", content: "Merge A? and B? around E; JSON please." }]);
    expect(prompts.fileOf("mhqa-q2")).toMatch(/prompts[/\\]synth[/\\]mhqa-q2\.md$/);
    writeFileSync(path.join(dir, "mhqa-q2.md"), "--- user\n{{document}} {{entity}} {{colour}}");
    expect(() => checkMhqaPrompts(new PromptLibrary(dir))).toThrow(`${path.join(dir, "mhqa-q2.md")}: unknown placeholder {{colour}}`);
  });
});

describe("s2s-train synth relations", () => {
  it("windows local documents, summarises, extracts, repairs or rejects, and exports train pairs", async () => {
    const dir = tmp();
    const docs = path.join(dir, "docs");
    mkdirSync(docs);
    const sentence = (i: number) => `In ${1800 + i} Mira Kovac surveyed Lake Varna with the Northern Survey Society.`;
    writeFileSync(path.join(docs, "long.md"), `# Survey\n\n${Array.from({ length: 12 }, (_, i) => sentence(i)).join(" ")}`);
    writeFileSync(path.join(docs, "garbage.txt"), "MARKER_GARBAGE Ostrel has bells.");
    writeFileSync(path.join(docs, "empty.txt"), "MARKER_EMPTY Nothing relates here.");
    writeFileSync(path.join(docs, "missing.txt"), "MARKER_MISSING Mira Kovac was born in Ostrel.");
    const graph = (extra: object = {}) => ({
      section_description: "A survey.", list_of_entities: ["Mira Kovac", "Lake Varna"],
      relations: [{ description: "surveyed", source_entities: ["Mira Kovac"], target_entities: ["Lake Varna"], strength: "strong" }], ...extra,
    });
    const llm = await startChatServer((body) => {
      const text = userText(body);
      if (!schemaName(body)) return { content: `Summary: ${text.split('"""')[1]!.trim().split(" ").slice(0, 4).join(" ")}` };
      if (text.includes("MARKER_GARBAGE")) return { content: "There are some relations in there." };
      if (text.includes("MARKER_EMPTY")) return { content: JSON.stringify(graph({ relations: [] })) };
      if (text.includes("MARKER_MISSING")) {
        return { content: JSON.stringify(graph({ list_of_entities: ["Mira Kovac"], relations: [{ description: "born in", source_entities: ["Mira Kovac"], target_entities: ["Ostrel"] }] })) };
      }
      return { content: "```json\n" + JSON.stringify(graph()) + "\n```" };
    });
    closers.push(llm);
    const out = path.join(dir, "run");
    const config = loadSynthConfig(undefined, {
      source: { type: "local", path: docs },
      llm: { endpoints: [{ url: llm.url, concurrency: 3 }] },
      relations: { window_tokens: 60, overlap_tokens: 10, export_summaries: true },
    });
    const summary = await runSynth({ task: "relations", config, out, progress: false, log: () => {} });
    const long = 2 + 12 * 12;  // "# Survey" + twelve 12-word sentences
    const longWindows = Math.ceil((long - 10) / 50);
    expect(summary.report.stages.relations).toMatchObject({
      items: longWindows + 3, kept: longWindows + 1, rejected: { invalid_json: 1, no_relations: 1 },
      repairs: { code_fence: longWindows, missing_entities: 1 },
    });
    const rows = readJsonl(path.join(out, "synth", "data.jsonl"));
    expect(rows).toHaveLength(2 * (longWindows + 1));
    const extraction = rows.filter((r) => r.task === "extraction");
    for (const r of extraction) {
      expect(String(r.input)).toMatch(/^Extract the entities and relations of this text as JSON/);
      expect(extractionSchema.safeParse(JSON.parse(String(r.target))).success).toBe(true);
    }
    const missing = extraction.find((r) => r.doc_id === "missing.txt")!;
    expect(JSON.parse(String(missing.target)).list_of_entities).toEqual(["Mira Kovac", "Ostrel"]);
    const windows = extraction.filter((r) => r.doc_id === "long.md").map((r) => r.window);
    expect(windows).toEqual(Array.from({ length: longWindows }, (_, i) => i));
    expect(rows.filter((r) => r.task === "summary").every((r) => String(r.target).startsWith("Summary: "))).toBe(true);
    // The summary reached the extraction prompt.
    const extract = llm.bodies.find((b) => schemaName(b) === "relations" && userText(b).includes("MARKER_MISSING"))!;
    expect(userText(extract)).toContain("Summary of the section:\nSummary: MARKER_MISSING Mira Kovac was");
  });
});
