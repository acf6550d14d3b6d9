// The train/validation split (disjoint, seeded, stable under added rows), the epoch plan
// (deterministic, length-grouped) and collate (shapes, padding, and what the native models
// count as loss tokens).
import { describe, expect, it } from "vitest";
import path from "node:path";
import { Model, dataContextForModel, loadData, makeCollate, planEpoch, type Example } from "../src/index.js";
import { dataConfig, fixtures, tempDir, writeFiles } from "./data-helpers.js";

const t5 = dataContextForModel(path.join(fixtures, "t5-relu-tied"), "/");
const llama = dataContextForModel(path.join(fixtures, "llama-gqa"), "/");

/** n distinct rows over the fixtures' "w3".."w95" vocabulary. */
function rows(n: number, offset = 0): string[] {
  return Array.from({ length: n }, (_, k) => {
    const i = k + offset;
    return JSON.stringify({ input: `w${3 + (i % 90)} w${3 + (Math.floor(i / 90) % 90)}`, target: `w${3 + ((i * 7) % 90)}` });
  });
}

async function split(file: string, dir: string, seed = 42, ratio = 0.2) {
  const data = await loadData(dataConfig({ train_file: file, valid_ratio: ratio, split_seed: seed }), { ...t5, baseDir: dir });
  const key = (e: Example) => `${e.text.input}|${e.text.target}`;
  return { data, train: new Set(data.train.map(key)), valid: new Set(data.valid.map(key)) };
}

describe("train/validation split", () => {
  const dir = tempDir();
  const base = rows(1000);
  writeFiles(dir, {
    "base.jsonl": base.join("\n"),
    // The same rows with 500 new ones before, between and after them, in another order.
    "grown.jsonl": [...rows(200, 1000), ...base.slice(0, 500).reverse(), ...rows(100, 1200), ...base.slice(500), ...rows(200, 1300)].join("\n"),
    "dupes.jsonl": [...base.slice(0, 100), ...base.slice(0, 100)].join("\n"),
  });

  it("is disjoint, covers every row and holds out about valid_ratio", async () => {
    const { data, train, valid } = await split("base.jsonl", dir);
    expect(train.size + valid.size).toBe(1000);
    for (const k of valid) expect(train.has(k)).toBe(false);
    expect(data.report).toMatchObject({ rows: 1000, train: train.size, valid: valid.size });
    expect(valid.size).toBeGreaterThan(150);
    expect(valid.size).toBeLessThan(250);
  });

  it("is stable: rows added anywhere in the file do not move existing rows across the split", async () => {
    const before = await split("base.jsonl", dir);
    const after = await split("grown.jsonl", dir);
    expect(after.data.report.rows).toBe(1500);
    for (const k of before.valid) expect(after.valid.has(k)).toBe(true);
    for (const k of before.train) expect(after.train.has(k)).toBe(true);
  });

  it("depends on the seed, and keeps identical rows on one side", async () => {
    const a = await split("base.jsonl", dir, 1);
    const b = await split("base.jsonl", dir, 2);
    expect([...a.valid].filter((k) => b.valid.has(k)).length).toBeLessThan(a.valid.size);
    const d = await split("dupes.jsonl", dir);
    for (const k of d.valid) expect(d.train.has(k)).toBe(false);
    expect(d.data.train.length + d.data.valid.length).toBe(200);
  });

  it("a small file still gets one validation row; ratio 0 holds out none; valid_file is used as given", async () => {
    writeFiles(dir, { "two.jsonl": rows(2).join("\n"), "valid.jsonl": rows(3, 500).join("\n") });
    const small = await split("two.jsonl", dir, 42, 0.01);
    expect([small.train.size, small.valid.size]).toEqual([1, 1]);
    const none = await split("base.jsonl", dir, 42, 0);
    expect(none.valid.size).toBe(0);
    const given = await loadData(dataConfig({ train_file: "base.jsonl", valid_file: "valid.jsonl" }), { ...t5, baseDir: dir });
    expect([given.train.length, given.valid.length]).toEqual([1000, 3]);
  });
});

function fakeExamples(lengths: number[]): Example[] {
  return lengths.map((n, id) => ({
    id, source: `x:${id + 1}`, inputIds: new Int32Array(n).fill(5), labels: new Int32Array(2).fill(6), promptLength: 0,
    text: { input: "", target: "" },
  }));
}

describe("planEpoch", () => {
  let s = 7;
  const lengths = Array.from({ length: 1000 }, () => ((s = (s * 48271) % 2147483647), 1 + (s % 120)));
  const examples = fakeExamples(lengths);
  const options = { batchSize: 16, seed: 3, epoch: 0, groupByLength: true };

  it("is a pure function of (examples, seed, epoch) covering every example once", () => {
    const plan = planEpoch(examples, options);
    expect(planEpoch(examples, options)).toEqual(plan);
    expect(plan.flat().sort((a, b) => a - b)).toEqual(examples.map((_, i) => i));
    expect(plan.every((b) => b.length >= 1 && b.length <= 16)).toBe(true);
    expect(plan.filter((b) => b.length < 16)).toHaveLength(1);  // 1000 = 62 * 16 + 8
    expect(planEpoch(examples, { ...options, epoch: 1 })).not.toEqual(plan);
    expect(planEpoch(examples, { ...options, seed: 4 })).not.toEqual(plan);
    const plain = planEpoch(examples, { ...options, groupByLength: false });
    expect(plain.flat().sort((a, b) => a - b)).toEqual(examples.map((_, i) => i));
    expect(planEpoch(examples, { ...options, groupByLength: false })).toEqual(plain);
  });

  it("grouping by length cuts padding, and the batch order is shuffled", () => {
    const padding = (plan: number[][]) =>
      plan.reduce((sum, b) => {
        const max = Math.max(...b.map((i) => lengths[i]!));
        return sum + b.reduce((p, i) => p + max - lengths[i]!, 0);
      }, 0);
    const grouped = planEpoch(examples, options);
    const plain = planEpoch(examples, { ...options, groupByLength: false });
    expect(padding(grouped)).toBeLessThan(padding(plain) / 4);
    // Not longest-first overall: the first batches are not the longest ones.
    const maxOf = (b: number[]) => Math.max(...b.map((i) => lengths[i]!));
    const firstMaxes = grouped.slice(0, 5).map(maxOf);
    expect(firstMaxes.some((m, i) => m !== [...grouped.map(maxOf)].sort((a, b) => b - a)[i])).toBe(true);
  });
});

describe("collate", () => {
  const dir = tempDir();
  writeFiles(dir, {
    "pairs.jsonl": '{"input": "w3 w4 w5", "target": "w6"}\n{"input": "w7", "target": "w8 w9 w10"}\n',
  });

  it("seq2seq: (B, T) inputs padded with pad and masked, (B, Td) labels padded with -100", async () => {
    const data = await loadData(dataConfig({ train_file: "pairs.jsonl", valid_ratio: 0 }), { ...t5, baseDir: dir });
    const batch = makeCollate("seq2seq", t5.padTokenId)(data.train);
    expect([batch.batchSize, batch.seqLen, batch.decoderLen]).toEqual([2, 4, 4]);
    expect(Array.from(batch.inputIds)).toEqual([3, 4, 5, 1, 7, 1, 0, 0]);
    expect(Array.from(batch.attentionMask!)).toEqual([1, 1, 1, 1, 1, 1, 0, 0]);
    expect(Array.from(batch.labels!)).toEqual([6, 1, -100, -100, 8, 9, 10, 1]);
    // The native T5 counts exactly the label tokens (decoder inputs are shifted inside).
    const model = await Model.load(path.join(fixtures, "t5-relu-tied"));
    const out = await model.forward(batch);
    expect(out.count).toBe(6);
  });

  it("causal: right padding with mask 0 and labels -100; the model counts only completion tokens", async () => {
    const data = await loadData(dataConfig({ train_file: "pairs.jsonl", valid_ratio: 0 }), { ...llama, baseDir: dir });
    const batch = makeCollate("causal", llama.padTokenId)(data.train);
    expect([batch.batchSize, batch.seqLen, batch.decoderLen]).toEqual([2, 6, undefined]);
    expect(Array.from(batch.inputIds)).toEqual([1, 3, 4, 5, 6, 2, 1, 7, 8, 9, 10, 2]);
    expect(Array.from(batch.labels!)).toEqual([-100, -100, -100, -100, 6, 2, -100, -100, 8, 9, 10, 2]);
    const short = makeCollate("causal", 0)([data.train[0]!, { ...data.train[1]!, inputIds: Int32Array.of(1, 7, 2), labels: Int32Array.of(-100, -100, 2) }]);
    expect(Array.from(short.attentionMask!)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    expect(Array.from(short.labels!).slice(6)).toEqual([-100, -100, 2, -100, -100, -100]);
    const model = await Model.load(path.join(fixtures, "llama-gqa"));
    const out = await model.forward(batch);
    expect(out.count).toBe(2 + 4);  // completion + eos of each row
  });

  it("pads up to a multiple (pad_to_multiple_of), never past maxInputLength, and the model counts the same tokens", async () => {
    const causal = await loadData(dataConfig({ train_file: "pairs.jsonl", valid_ratio: 0 }), { ...llama, baseDir: dir });
    const plain = makeCollate("causal", llama.padTokenId)(causal.train);
    const batch = makeCollate("causal", llama.padTokenId, { padToMultipleOf: 4 })(causal.train);
    expect([batch.batchSize, batch.seqLen]).toEqual([2, 8]);  // 6 -> 8
    expect(Array.from(batch.inputIds).slice(0, 8)).toEqual([1, 3, 4, 5, 6, 2, llama.padTokenId, llama.padTokenId]);
    expect(Array.from(batch.attentionMask!).slice(0, 8)).toEqual([1, 1, 1, 1, 1, 1, 0, 0]);
    expect(Array.from(batch.labels!).slice(8)).toEqual([-100, -100, 8, 9, 10, 2, -100, -100]);
    // The cap: 6 -> 7 under a cap of 7 (the multiple of 4 would be 8); a row longer than the cap keeps its length.
    expect(makeCollate("causal", 0, { padToMultipleOf: 4, maxInputLength: 7 })(causal.train).seqLen).toBe(7);
    expect(makeCollate("causal", 0, { padToMultipleOf: 4, maxInputLength: 5 })(causal.train).seqLen).toBe(6);
    const model = await Model.load(path.join(fixtures, "llama-gqa"));
    const [a, b] = [await model.forward(plain), await model.forward(batch)];
    expect(b.count).toBe(a.count);
    expect(b.loss).toBeCloseTo(a.loss!, 5);  // padding is masked and ignored
    // seq2seq: the target length too.
    const s2s = await loadData(dataConfig({ train_file: "pairs.jsonl", valid_ratio: 0 }), { ...t5, baseDir: dir });
    const t5batch = makeCollate("seq2seq", t5.padTokenId, { padToMultipleOf: 3 })(s2s.train);
    expect([t5batch.seqLen, t5batch.decoderLen]).toEqual([6, 6]);
    expect(() => makeCollate("causal", 0, { padToMultipleOf: 0 })).toThrow(/integer >= 1/);
  });

  it("refuses an empty batch and a bad pad id", () => {
    expect(() => makeCollate("causal", 0)([])).toThrow(/at least one example/);
    expect(() => makeCollate("causal", -1)).toThrow(/token id >= 0/);
  });
});
