// Curation: the answer normalisation (SQuAD's), the seeded slice split, answering up to k times
// with an endpoint as the curation model, imputation, and the fine-tune plug-in point.
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { normalizeAnswer, softExactMatch } from "../src/synth/answer-match.js";
import { splitSlices, type FineTuneRequest } from "../src/synth/curate.js";
import { runSynth } from "../src/synth/run-synth.js";
import { loadSynthConfig } from "../src/synth/config.js";
import type { LlmBackend } from "../src/llm/types.js";
import { startChatServer, userText, type ChatServer } from "./synth/fake-servers.js";

const closers: ChatServer[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((s) => s.close()));
});
const tmp = () => mkdtempSync(path.join(tmpdir(), "s2s-curate-"));
const readJsonl = (file: string) => readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe("answer normalisation (SQuAD v1.1 evaluate-v1.1.py normalize_answer)", () => {
  // Cases follow the script's definition: lower(), remove string.punctuation, remove
  // \b(a|an|the)\b, ' '.join(split()).
  it.each([
    ["The Eiffel Tower", "eiffel tower"],
    ["  an  apple, a pear & THE plum!  ", "apple pear plum"],
    ["Theatre", "theatre"],
    ["U.S.A.", "usa"],
    ["a", ""],
    ["Zürich's lake", "zürichs lake"],
    ["l'été", "lété"],
    ["1,200", "1200"],
    ["«Ostrel»", "«ostrel»"],  // not ASCII punctuation, so kept, as in Python
    ["café the\tend", "café end"],
  ])("%j → %j", (text, expected) => {
    expect(normalizeAnswer(text)).toBe(expected);
  });

  it("soft exact match: the gold answer inside the prediction", () => {
    expect(softExactMatch("It was the village of Ostrel.", "Ostrel")).toBe(true);
    expect(softExactMatch("The answer is Ostrels", "Ostrel")).toBe(true);  // substring, as soft EM is defined
    expect(softExactMatch("Narn", "Ostrel")).toBe(false);
    expect(softExactMatch("anything", "The")).toBe(false);  // an empty normalised gold only matches an empty prediction
    expect(softExactMatch("", "the")).toBe(true);
  });
});

describe("splitSlices", () => {
  it("is seeded, disjoint and complete", () => {
    const rows = Array.from({ length: 11 }, (_, i) => i);
    const a = splitSlices(rows, 0.5, 3);
    expect(a).toEqual(splitSlices(rows, 0.5, 3));
    expect(a.slice0).toHaveLength(6);
    expect([...a.slice0, ...a.slice1].sort((x, y) => x - y)).toEqual(rows);
    expect(a.slice1).toEqual(a.slice1Index.map((i) => rows[i]));
    expect(splitSlices(rows, 0.5, 4).slice0).not.toEqual(a.slice0);
    expect(splitSlices([1, 2], 0.99, 1).slice1).toHaveLength(1);
  });
});

/** A generated set: question i has answer "Answer i"; d1/q2/entity for imputation. */
function writeGenerated(dir: string, n: number): string {
  const file = path.join(dir, "data.jsonl");
  writeFileSync(file, Array.from({ length: n }, (_, i) => JSON.stringify({
    input: `Question ${i}?`, target: `Let's split…\nSo the answer is: Answer ${i}`, answer: `Answer ${i}`,
    question: `Question ${i}?`, q1: `First ${i}?`, q2: `About Entity ${i}?`, entity: `Entity ${i}`,
    d1: { id: `d${i}`, title: `D ${i}`, text: `Document ${i} names Entity ${i}.` },
  })).join("\n") + "\n");
  return file;
}

/** The curation model: question i%3==0 never right, i%3==1 right at the 2nd try, i%3==2 at once. */
function answerModel() {
  const tries = new Map<string, number>();
  return (prompt: string): string => {
    const i = Number(/Question (\d+)\?/.exec(prompt)![1]);
    const t = (tries.get(prompt) ?? 0) + 1;
    tries.set(prompt, t);
    const right = i % 3 === 2 || (i % 3 === 1 && t >= 2);
    return `Q1: …\nSo the answer is: ${right ? `the answer ${i}` : "Narn"}`;
  };
}

describe("s2s-train synth curate", () => {
  it("keeps the slice-1 questions the curation model answers within k tries", async () => {
    const dir = tmp();
    const input = writeGenerated(dir, 12);
    const model = answerModel();
    const llm = await startChatServer((body) => ({ content: model(userText(body)) }));
    closers.push(llm);
    const out = path.join(dir, "run");
    const config = loadSynthConfig(undefined, {
      curate: { input, slice0_ratio: 0.5, seed: 5, k: 3, answer_with: { endpoints: [{ url: llm.url, model: "tuned", concurrency: 2 }] } },
    });
    const summary = await runSynth({ task: "curate", config, out, progress: false, log: () => {} });

    const slice0 = readJsonl(path.join(out, "synth", "curate", "slice0.jsonl"));
    expect(slice0).toHaveLength(6);
    const slice1 = Array.from({ length: 12 }, (_, i) => i).filter((i) => !slice0.some((r) => r.input === `Question ${i}?`));
    const never = slice1.filter((i) => i % 3 === 0);
    const report = JSON.parse(readFileSync(path.join(out, "synth", "report.json"), "utf8"));
    expect(report).toMatchObject({ kept: 6 - never.length, rejected: never.length ? { never_answered: never.length } : {}, slice0: 6 });
    expect(summary.report.stages.curate!.items).toBe(6);
    const curated = readJsonl(path.join(out, "synth", "curated.jsonl"));
    expect(curated.map((r) => r.input).sort()).toEqual(slice1.filter((i) => i % 3 !== 0).map((i) => `Question ${i}?`).sort());
    for (const r of curated) {
      const i = Number(/\d+/.exec(String(r.input))![0]);
      expect(r.curation).toEqual({ answered_at: i % 3 === 1 ? 2 : 1 });
      expect(r.target).toBe(`Let's split…\nSo the answer is: Answer ${i}`);  // the row is carried through whole
    }
    // Attempts stop at the first right answer, and never pass k.
    for (const i of slice1) {
      const asked = llm.bodies.filter((b) => userText(b) === `Question ${i}?`).length;
      expect(asked).toBe(i % 3 === 0 ? 3 : i % 3 === 1 ? 2 : 1);
    }
    const rejected = readJsonl(path.join(out, "synth", "curate", "rejected.jsonl"));
    expect(rejected.every((r) => r.reason === "never_answered" && String(r.detail).includes('last answer "Narn"'))).toBe(true);
  });

  it("with imputation, drops entries whose rebuilt Q1 no longer leads to the entity", async () => {
    const dir = tmp();
    const input = writeGenerated(dir, 8);
    const llm = await startChatServer((body) => {
      const prompt = userText(body);
      if (prompt.startsWith("Question ")) return { content: `So the answer is: Answer ${/\d+/.exec(prompt)![0]}` };
      if (prompt.includes("Write the first step")) {
        const i = /Entity (\d+)/.exec(prompt)![1];
        return { content: `Which entity does document ${i} name?` };
      }
      const i = Number(/document (\d+) name/.exec(prompt)![1]);
      return { content: i === 3 || i === 6 ? "Somebody else" : `Entity ${i}` };
    });
    closers.push(llm);
    const out = path.join(dir, "run");
    const config = loadSynthConfig(undefined, {
      curate: { input, slice0_ratio: 0.25, answer_with: { endpoints: [{ url: llm.url }] }, imputation: { enabled: true } },
    });
    await runSynth({ task: "curate", config, out, progress: false, log: () => {} });
    const slice0 = readJsonl(path.join(out, "synth", "curate", "slice0.jsonl")).map((r) => r.input);
    const dropped = [3, 6].filter((i) => !slice0.includes(`Question ${i}?`));
    const report = JSON.parse(readFileSync(path.join(out, "synth", "report.json"), "utf8"));
    expect(report.kept).toBe(6 - dropped.length);
    expect(report.rejected).toEqual(dropped.length ? { imputation_changed_answer: dropped.length } : {});
    const curated = readJsonl(path.join(out, "synth", "curated.jsonl"));
    const one = curated[0]!;
    expect((one.curation as { q1_imputed: string }).q1_imputed).toMatch(/^Which entity does document \d+ name\?$/);
    // D1, Q, Q2 and E reached the imputation prompt.
    const impute = llm.bodies.find((b) => userText(b).includes("Write the first step"))!;
    expect(userText(impute)).toMatch(/Document \d+ names Entity \d+\.[\s\S]*A two-step question: Question \d+\?[\s\S]*About Entity \d+\?/);
  });

  it("fine-tunes on slice 0 through the trainer plug-in once, then answers with that model", async () => {
    const dir = tmp();
    const input = writeGenerated(dir, 6);
    const calls: FineTuneRequest[] = [];
    const loaded: string[] = [];
    const tunedModel: LlmBackend = {
      name: "tuned",
      complete: async (r) => ({ text: `So the answer is: Answer ${/\d+/.exec(r.messages[0]!.content)![0]}`, finishReason: "stop",
        usage: { promptTokens: 3, completionTokens: 4 }, backend: "tuned" }),
    };
    const options = {
      task: "curate" as const, out: path.join(dir, "run"), progress: false as const, log: () => {},
      config: loadSynthConfig(undefined, { curate: { input, base_model: dir, train: { lr: 1e-4 } } }),
      fineTune: async (r: FineTuneRequest) => {
        calls.push(r);
        return { modelDir: path.join(r.outputDir, "final") };
      },
      loadLocalBackend: async (modelDir: string) => {
        loaded.push(modelDir);
        return tunedModel;
      },
    };
    const first = await runSynth(options);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ baseModel: dir, trainFile: path.join(dir, "run", "synth", "curate", "slice0.jsonl"), settings: { lr: 1e-4 } });
    expect(loaded).toEqual([path.join(dir, "run", "synth", "curate", "model", "final")]);
    expect(first.report.kept).toBe(3);
    await runSynth(options);  // resumed: no second fine-tune
    expect(calls).toHaveLength(1);

    // Without the trainer wired in, the message says what to do instead.
    const bare = { ...options, out: path.join(dir, "bare") } as Partial<typeof options>;
    delete bare.fineTune;
    await expect(runSynth(bare as typeof options)).rejects.toThrow(/trainer \(s2s-train train\).*curate\.answer_with\.endpoints/);
  });
});
