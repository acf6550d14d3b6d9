#!/usr/bin/env node
// Proof that the bundled example is learnable in the time budget, with the package's own pieces
// and no trainer: createModelFolder (from-scratch T5), loadData (split, tokenization), planEpoch +
// makeCollate (batches), Model.trainStep (AdamW, linear schedule with warmup), and greedy
// decoding by repeated full forward passes for the held-out exact match. Then, optionally, the
// LoRA task on the trained model.
// Usage: npm run build && node examples/number-words/check-learnability.mjs [steps=1200] [lora_steps=0]
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  Model, createModelFolder, dataConfigSchema, dataContextForModel, loadData, makeCollate, planEpoch,
} from "../../dist/src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split("=")));
const steps = Number(args.steps ?? 1200);
const loraSteps = Number(args.lora_steps ?? 0);
const batchSize = Number(args.batch_size ?? 32);
const evalEvery = Number(args.eval_every ?? 200);
const evalSamples = Number(args.eval_samples ?? 200);

/** Greedy decoding, batched: decoder inputs grow by the argmax of the last position. */
async function greedy(model, collate, examples, maxNew = 12) {
  const out = [];
  for (let i = 0; i < examples.length; i += 64) {
    const part = examples.slice(i, i + 64);
    const enc = collate(part);
    const B = part.length;
    const seqs = part.map(() => [0]);  // decoder_start_token_id
    const done = new Array(B).fill(false);
    for (let t = 0; t < maxNew && !done.every(Boolean); t++) {
      const Td = seqs[0].length;
      const decoderInputIds = Int32Array.from(seqs.flat());
      const r = await model.forward({ ...enc, labels: undefined, decoderLen: Td, decoderInputIds }, { logits: true });
      const V = r.vocabSize;
      seqs.forEach((s, b) => {
        let best = 0;
        const off = (b * Td + Td - 1) * V;
        for (let v = 1; v < V; v++) if (r.logits[off + v] > r.logits[off + best]) best = v;
        s.push(done[b] ? 0 : best);
        if (best === 1) done[b] = true;
      });
    }
    for (const s of seqs) {
      const ids = s.slice(1);
      const end = ids.indexOf(1);
      out.push(end < 0 ? ids : ids.slice(0, end));
    }
  }
  return out;
}

async function exactMatch(model, ctx, collate, examples) {
  const predictions = await greedy(model, collate, examples);
  let right = 0;
  predictions.forEach((ids, i) => {
    // (@huggingface/tokenizers' decode throws on an empty list: an immediate eos is "")
    const text = ids.length ? ctx.tokenizer.decode(ids, { skip_special_tokens: true }) : "";
    if (text === examples[i].text.target) right++;
  });
  return right / examples.length;
}

async function train(model, ctx, data, { steps, lr, warmup, weightDecay, label }) {
  const collate = makeCollate(data.kind, ctx.padTokenId);
  const probe = data.valid.slice(0, evalSamples);
  const t0 = performance.now();
  let trainTime = 0;
  console.log(`${label} step 0: held-out exact match ${(await exactMatch(model, ctx, collate, probe)).toFixed(3)} (${probe.length} examples)`);
  let epoch = 0;
  let plan = [];
  for (let step = 1; step <= steps; step++) {
    if (plan.length === 0) plan = planEpoch(data.train, { batchSize, seed: 0, epoch: epoch++, groupByLength: true });
    const batch = collate(plan.shift().map((i) => data.train[i]));
    const rate = step <= warmup ? (lr * step) / warmup : (lr * (steps - step)) / (steps - warmup);
    const s0 = performance.now();
    const r = await model.trainStep(batch, { step, lr: rate, weightDecay, maxGradNorm: 1 });
    trainTime += performance.now() - s0;
    if (step % evalEvery === 0 || step === steps) {
      const em = await exactMatch(model, ctx, collate, probe);
      console.log(`${label} step ${step}: loss ${r.loss.toFixed(4)}, held-out exact match ${em.toFixed(3)}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
  const em = await exactMatch(model, ctx, collate, data.valid);
  console.log(`${label}: ${steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(trainTime / 1000).toFixed(1)} s in trainStep); exact match on all ${data.valid.length} held-out examples: ${em.toFixed(4)}`);
}

const work = mkdtempSync(path.join(os.tmpdir(), "s2s-number-words-"));
try {
  const t0 = performance.now();
  const modelDir = path.join(work, "init");
  await createModelFolder(path.join(here, "model"), modelDir, { seed: 0 });
  const ctx = dataContextForModel(modelDir, here);
  const data = await loadData(dataConfigSchema.parse({ train_file: "data/words-to-digits.jsonl", max_input_length: 32, max_target_length: 16 }), ctx);
  console.log(`data: ${JSON.stringify({ ...data.report, skipped: data.report.skipped.length })}`);
  const model = await Model.load(modelDir, { trainable: true });
  console.log(`model: ${model.info().parameters} parameters`);
  await train(model, ctx, data, { steps, lr: 1e-3, warmup: 100, weightDecay: 0.01, label: "words->digits" });
  console.log(`total wall time ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (loraSteps > 0) {
    const loraData = await loadData(dataConfigSchema.parse({ train_file: "data/digits-to-words.jsonl", max_input_length: 16, max_target_length: 32 }), ctx);
    model.applyLora({ r: 8, alpha: 16, targetModules: ["q", "k", "v", "o", "wi", "wo"], seed: 0 });
    console.log(`LoRA: ${model.info().trainableParameters} trainable parameters`);
    await train(model, ctx, loraData, { steps: loraSteps, lr: 3e-3, warmup: 100, weightDecay: 0, label: "LoRA digits->words" });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
