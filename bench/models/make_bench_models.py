#!/usr/bin/python3
"""Random-weight Hugging Face model folders for the training benchmark (`npm run bench`).

Run (Debian's python3 with torch, not the pyenv python3 on PATH):

    /usr/bin/python3 bench/models/make_bench_models.py [--out build/bench-models] [name ...]

Writes <out>/<name>/{config.json, generation_config.json, model.safetensors} for
  gpt2-124m  GPT-2 124M shape: vocab 50257, n_embd 768, 12 layers, 12 heads, n_positions 1024
  t5-small   T5-small shape: d_model 512, d_ff 2048, 6+6 layers, 8 heads, d_kv 64, vocab 32128,
             ReLU, tied embeddings (T5 v1.0)
  gpt-5m     a ~5M-parameter GPT-2: n_embd 256, 4 layers, 4 heads, vocab 8192, n_positions 512
  smollm-135m  SmolLM-135M shape (Llama): hidden 576, intermediate 1536, 30 layers, 9 heads,
             3 key/value heads (grouped-query), vocab 49152, tied embeddings, rope_theta 10000
Weights are random (seeded, so the files are the same on every run) in GPT-2/T5 initialiser
style; the benchmark measures speed, not quality. A folder whose config.json already matches is
left alone. The cache directory is gitignored (build/); never commit the weights.
The safetensors writer is scripts/fixtures/make_tiny_models.py's (imported, not copied).
"""
import argparse
import json
import os
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
import make_tiny_models as mt  # noqa: E402

HF_VERSION = mt.HF_VERSION


def gpt2_config(vocab, n_embd, n_layer, n_head, n_positions):
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0,  # dropout off: the PyTorch side runs without dropout too
        "bos_token_id": vocab - 1,
        "embd_pdrop": 0.0,
        "eos_token_id": vocab - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": n_positions,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_inner": None,
        "n_layer": n_layer,
        "n_positions": n_positions,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.0,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "torch_dtype": "float32",
        "transformers_version": HF_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }


def gpt2_params(cfg):
    """(name, shape, kind) in HF GPT2LMHeadModel naming; Conv1D weights are (in, out)."""
    V, H, L, P = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["n_positions"]
    F = 4 * H
    ps = [("transformer.wte.weight", (V, H), "w"), ("transformer.wpe.weight", (P, H), "pos")]
    for i in range(L):
        p = f"transformer.h.{i}."
        ps += [
            (p + "ln_1.weight", (H,), "one"), (p + "ln_1.bias", (H,), "zero"),
            (p + "attn.c_attn.weight", (H, 3 * H), "w"), (p + "attn.c_attn.bias", (3 * H,), "zero"),
            (p + "attn.c_proj.weight", (H, H), "w"), (p + "attn.c_proj.bias", (H,), "zero"),
            (p + "ln_2.weight", (H,), "one"), (p + "ln_2.bias", (H,), "zero"),
            (p + "mlp.c_fc.weight", (H, F), "w"), (p + "mlp.c_fc.bias", (F,), "zero"),
            (p + "mlp.c_proj.weight", (F, H), "w"), (p + "mlp.c_proj.bias", (H,), "zero"),
        ]
    ps += [("transformer.ln_f.weight", (H,), "one"), ("transformer.ln_f.bias", (H,), "zero")]
    return ps


def t5_config(vocab, d_model, d_ff, n_layers, n_heads, d_kv):
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "d_ff": d_ff,
        "d_kv": d_kv,
        "d_model": d_model,
        "decoder_start_token_id": 0,
        "dense_act_fn": "relu",
        "dropout_rate": 0.0,
        "eos_token_id": 1,
        "feed_forward_proj": "relu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "is_gated_act": False,
        "layer_norm_epsilon": 1e-06,
        "model_type": "t5",
        "num_decoder_layers": n_layers,
        "num_heads": n_heads,
        "num_layers": n_layers,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": HF_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }


def t5_params(cfg):
    """HF T5ForConditionalGeneration naming, v1.0 (ReLU wi/wo), tied: no lm_head.weight."""
    V, D, F, nh, dkv = cfg["vocab_size"], cfg["d_model"], cfg["d_ff"], cfg["num_heads"], cfg["d_kv"]
    inner = nh * dkv
    ps = [("shared.weight", (V, D), "w")]
    for stack, n in (("encoder", cfg["num_layers"]), ("decoder", cfg["num_decoder_layers"])):
        for i in range(n):
            p = f"{stack}.block.{i}.layer."
            attns = [("0.SelfAttention", "0.layer_norm")]
            if stack == "decoder":
                attns.append(("1.EncDecAttention", "1.layer_norm"))
            for a, ln in attns:
                ps += [(p + a + ".q.weight", (inner, D), "w"), (p + a + ".k.weight", (inner, D), "w"),
                       (p + a + ".v.weight", (inner, D), "w"), (p + a + ".o.weight", (D, inner), "w")]
                if i == 0 and a.endswith("SelfAttention"):
                    ps.append((p + a + ".relative_attention_bias.weight", (cfg["relative_attention_num_buckets"], nh), "w"))
                ps.append((p + ln + ".weight", (D,), "one"))
            f = "2" if stack == "decoder" else "1"
            ps += [(p + f + ".DenseReluDense.wi.weight", (F, D), "w"), (p + f + ".DenseReluDense.wo.weight", (D, F), "w"),
                   (p + f + ".layer_norm.weight", (D,), "one")]
        ps.append((f"{stack}.final_layer_norm.weight", (D,), "one"))
    return ps


def llama_config(vocab, hidden, intermediate, n_layers, n_heads, n_kv, max_positions):
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": hidden // n_heads,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": max_positions,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": n_heads,
        "num_hidden_layers": n_layers,
        "num_key_value_heads": n_kv,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": HF_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }


def llama_params(cfg):
    """HF LlamaForCausalLM naming, nn.Linear weights (out, in); tied: no lm_head.weight."""
    V, H, F = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    hd, nh, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    ps = [("model.embed_tokens.weight", (V, H), "w")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        ps += [
            (p + "input_layernorm.weight", (H,), "one"),
            (p + "self_attn.q_proj.weight", (nh * hd, H), "w"), (p + "self_attn.k_proj.weight", (nkv * hd, H), "w"),
            (p + "self_attn.v_proj.weight", (nkv * hd, H), "w"), (p + "self_attn.o_proj.weight", (H, nh * hd), "w"),
            (p + "post_attention_layernorm.weight", (H,), "one"),
            (p + "mlp.gate_proj.weight", (F, H), "w"), (p + "mlp.up_proj.weight", (F, H), "w"),
            (p + "mlp.down_proj.weight", (H, F), "w"),
        ]
    ps.append(("model.norm.weight", (H,), "one"))
    return ps


MODELS = {
    "gpt2-124m": ("causal", lambda: gpt2_config(50257, 768, 12, 12, 1024)),
    "t5-small": ("t5", lambda: t5_config(32128, 512, 2048, 6, 8, 64)),
    "gpt-5m": ("causal", lambda: gpt2_config(8192, 256, 4, 4, 512)),
    "smollm-135m": ("llama", lambda: llama_config(49152, 576, 1536, 30, 9, 3, 2048)),
}


def param_list(kind, cfg):
    return {"causal": gpt2_params, "llama": llama_params, "t5": t5_params}[kind](cfg)


def init(params, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape, kind in params:
        if kind == "w":
            out[name] = torch.randn(shape, generator=g) * 0.02
        elif kind == "pos":
            out[name] = torch.randn(shape, generator=g) * 0.01
        elif kind == "one":
            out[name] = torch.ones(shape)
        else:
            out[name] = torch.zeros(shape)
    return out


def generation_config(cfg):
    keys = ("bos_token_id", "eos_token_id", "decoder_start_token_id", "pad_token_id")
    g = {k: cfg[k] for k in keys if k in cfg}
    g["transformers_version"] = HF_VERSION
    return g


def build(name, out_dir, seed=0):
    kind, make_cfg = MODELS[name]
    cfg = make_cfg()
    folder = os.path.join(out_dir, name)
    cfg_path = os.path.join(folder, "config.json")
    weights = os.path.join(folder, "model.safetensors")
    if os.path.exists(cfg_path) and os.path.exists(weights):
        with open(cfg_path) as f:
            if json.load(f) == cfg:
                return folder, False
    os.makedirs(folder, exist_ok=True)
    P = init(param_list(kind, cfg), seed)
    tmp = weights + ".tmp"
    mt.write_safetensors(tmp, P)
    os.replace(tmp, weights)
    mt.write_json(os.path.join(folder, "generation_config.json"), generation_config(cfg))
    mt.write_json(cfg_path, cfg)  # last: its presence marks a complete folder
    n = sum(t.numel() for t in P.values())
    print(f"{name}: {n / 1e6:.2f}M parameters -> {folder}", flush=True)
    return folder, True


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-models"))
    ap.add_argument("names", nargs="*", default=list(MODELS))
    a = ap.parse_args(argv)
    for n in a.names:
        if n not in MODELS:
            ap.error(f"unknown model {n!r}; expected one of {', '.join(MODELS)}")
        build(n, a.out)


if __name__ == "__main__":
    main(sys.argv[1:])
