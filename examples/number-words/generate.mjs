#!/usr/bin/env node
// Writes the bundled example datasets, deterministically (no randomness: every number in range,
// in order; the train/validation split is the data loader's seeded hash split):
//   data/words-to-digits.jsonl  {"input": "four thousand three hundred twelve", "target": "4312"}
//                               for 0..9999: the from-scratch T5 example (configs/default.yaml);
//   data/digits-to-words.jsonl  {"input": "4312", "target": "four thousand three hundred twelve"}
//                               the same numbers the other way round: the related task that the
//                               LoRA example fine-tunes the trained model on.
// and the model template both examples start from, model/: config.json (a small T5, trained from
// scratch), generation_config.json, and tokenizer.json + tokenizer_config.json built from the
// two datasets by the package's WordPiece builder (every number word is one token, digits are
// spelled one by one). No weights: createModelFolder initialises them with a seed.
// Usage: npm run build && node examples/number-words/generate.mjs
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

const ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
  "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"];
const TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/** American English without "and" or hyphens: 4312 -> "four thousand three hundred twelve". */
export function numberToWords(n) {
  if (!Number.isInteger(n) || n < 0 || n > 9999) throw new Error(`expected an integer in 0..9999, got ${n}`);
  if (n < 20) return ONES[n];
  if (n < 100) return TENS[Math.floor(n / 10)] + (n % 10 ? " " + ONES[n % 10] : "");
  if (n < 1000) return ONES[Math.floor(n / 100)] + " hundred" + (n % 100 ? " " + numberToWords(n % 100) : "");
  return ONES[Math.floor(n / 1000)] + " thousand" + (n % 1000 ? " " + numberToWords(n % 1000) : "");
}

function writeAtomic(file, text) {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

function writeJsonl(file, rows) {
  writeAtomic(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  console.log(`${path.relative(process.cwd(), file)}: ${rows.length} rows`);
}

const writeJson = (file, value) => writeAtomic(file, JSON.stringify(value, null, 2) + "\n");

/** The model: T5 v1.0 shape (ReLU, tied head), 2 + 2 layers of width 128: 0.93M parameters. */
function t5Config(vocabSize) {
  return {
    architectures: ["T5ForConditionalGeneration"],
    model_type: "t5",
    vocab_size: vocabSize,
    d_model: 128,
    d_kv: 32,
    d_ff: 512,
    num_layers: 2,
    num_decoder_layers: 2,
    num_heads: 4,
    relative_attention_num_buckets: 32,
    relative_attention_max_distance: 128,
    feed_forward_proj: "relu",
    dropout_rate: 0.0,
    layer_norm_epsilon: 1e-6,
    initializer_factor: 1.0,
    tie_word_embeddings: true,
    is_encoder_decoder: true,
    pad_token_id: 0,
    eos_token_id: 1,
    decoder_start_token_id: 0,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const numbers = Array.from({ length: 10000 }, (_, n) => n);
  const toDigits = numbers.map((n) => ({ input: numberToWords(n), target: String(n) }));
  const toWords = numbers.map((n) => ({ input: String(n), target: numberToWords(n) }));
  writeJsonl(path.join(here, "data/words-to-digits.jsonl"), toDigits);
  writeJsonl(path.join(here, "data/digits-to-words.jsonl"), toWords);

  const { buildWordPieceTokenizer } = await import("../../dist/src/index.js");
  const built = buildWordPieceTokenizer([...toDigits, ...toWords].flatMap((r) => [r.input, r.target]), { minFrequency: 2 });
  writeJson(path.join(here, "model/tokenizer.json"), built.tokenizer);
  writeJson(path.join(here, "model/tokenizer_config.json"), built.tokenizerConfig);
  writeJson(path.join(here, "model/config.json"), t5Config(built.vocabSize));
  writeJson(path.join(here, "model/generation_config.json"), {
    decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, max_new_tokens: 16,
  });
  console.log(`model/: T5 config and a ${built.vocabSize}-token tokenizer`);
}
