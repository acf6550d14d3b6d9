// Model FLOPs of one training step, for the train bench's "% of peak" column: how close a run
// comes to what the machine's FMA units can do, a figure that does not drift with the host the
// way PyTorch's tokens/s does.
//
// Counted: every matmul of the step (2 flops per multiply-add) — forward, the input gradient
// (dX) and, for trainable weights only, the weight gradient (dW) — plus attention's QK^T and PV
// products (forward 2, backward 4 per pair, counted over the full T x T square as PaLM's
// appendix B and llm.c do, even for causal attention). The LM head counts as a matmul (tied or
// not); embeddings, norms, activations, softmax, loss and the optimizer count nothing. So full
// fine-tuning is 6 x matmul params per token + attention, LoRA 4 x frozen params + 6 x adapter
// params + attention (the dX that LoRA still needs below the first adapter counts as well).
//
//   trainingFlopsPerStep(config, { batch, seq, decSeq, mode: "full"|"lora", loraR, loraTargets })

// A linear layer applied to `rows` rows: [name, in, out, rows].
function gpt2Linears(c, rows) {
  const C = c.n_embd, F = c.n_inner ?? 4 * C;
  const perLayer = [["c_attn", C, 3 * C], ["c_proj", C, C], ["c_fc", C, F], ["c_proj", F, C]];
  const out = [];
  for (let l = 0; l < c.n_layer; l++) for (const [n, i, o] of perLayer) out.push([n, i, o, rows]);
  out.push(["lm_head", C, c.vocab_size, rows]);
  return out;
}

function llamaLinears(c, rows) {
  const H = c.hidden_size, F = c.intermediate_size, hd = c.head_dim ?? H / c.num_attention_heads;
  const q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const perLayer = [["q_proj", H, q], ["k_proj", H, kv], ["v_proj", H, kv], ["o_proj", q, H],
                    ["gate_proj", H, F], ["up_proj", H, F], ["down_proj", F, H]];
  const out = [];
  for (let l = 0; l < c.num_hidden_layers; l++) for (const [n, i, o] of perLayer) out.push([n, i, o, rows]);
  out.push(["lm_head", H, c.vocab_size, rows]);
  return out;
}

function t5Linears(c, encRows, decRows) {
  const C = c.d_model, I = c.num_heads * c.d_kv, F = c.d_ff;
  const gated = (c.feed_forward_proj ?? "relu").startsWith("gated");
  const ffn = (rows) => (gated ? [["wi_0", C, F, rows], ["wi_1", C, F, rows]] : [["wi", C, F, rows]]).concat([["wo", F, C, rows]]);
  const attn = (qRows, kvRows) => [["q", C, I, qRows], ["k", C, I, kvRows], ["v", C, I, kvRows], ["o", I, C, qRows]];
  const out = [];
  for (let l = 0; l < c.num_layers; l++) out.push(...attn(encRows, encRows), ...ffn(encRows));
  for (let l = 0; l < (c.num_decoder_layers ?? c.num_layers); l++) {
    out.push(...attn(decRows, decRows), ...attn(decRows, encRows), ...ffn(decRows));
  }
  out.push(["lm_head", C, c.vocab_size, decRows]);
  return out;
}

/** Attention score and value products, forward + backward: [queries, keys, inner] per sequence per layer. */
function attentionProducts(c, seq, decSeq) {
  if (c.model_type === "t5") {
    const I = c.num_heads * c.d_kv, Ld = c.num_decoder_layers ?? c.num_layers;
    return [[seq, seq, I, c.num_layers], [decSeq, decSeq, I, Ld], [decSeq, seq, I, Ld]];
  }
  if (c.model_type === "gpt2") return [[seq, seq, c.n_embd, c.n_layer]];
  const hd = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  return [[seq, seq, c.num_attention_heads * hd, c.num_hidden_layers]];
}

export function trainingFlopsPerStep(config, { batch, seq, decSeq = 0, mode, loraR = 0, loraTargets = [] }) {
  let linears;
  if (config.model_type === "gpt2") linears = gpt2Linears(config, batch * seq);
  else if (config.model_type === "llama" || config.model_type === "qwen2") linears = llamaLinears(config, batch * seq);
  else if (config.model_type === "t5") linears = t5Linears(config, batch * seq, batch * decSeq);
  else throw new Error(`train-flops: model_type '${config.model_type}' is not counted (gpt2, llama, qwen2 and t5 are)`);
  let flops = 0;
  for (const [name, inF, outF, rows] of linears) {
    const macs = rows * inF * outF;
    flops += 2 * macs * (mode === "full" ? 3 : 2);
    if (mode === "lora" && loraTargets.includes(name)) flops += 2 * 3 * rows * loraR * (inF + outF);
  }
  for (const [q, k, inner, layers] of attentionProducts(config, seq, decSeq)) flops += batch * layers * 12 * q * k * inner;
  return flops;
}
