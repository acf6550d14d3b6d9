#!/usr/bin/python3
"""PyTorch anchor for the generation benchmark: greedy decoding of a GPT-2 or Llama-family folder
with a plain key/value cache, one configuration per process, printed as one JSON object on stdout.

    /usr/bin/python3 bench/models/pytorch_generate.py --model build/bench-models/gpt2-124m \
        --threads 2 [--batch 1] [--prompt 128] [--new 128]

The models are scripts/fixtures/make_tiny_models.py's ports of GPT2LMHeadModel and
LlamaForCausalLM (their weights loader and layer math: layer_norm / rms_norm, Conv1D / Linear,
gelu_new / SiLU-gated MLP, rope, repeat_kv, eager attention), extended here with the cache
transformers 4.2x used ("past_key_values" tuples: each step concatenates the new key/value to
the past ones, so the cache is re-copied every step; Llama caches its kv heads after rope, before
repeat_kv) and the logits of the last position only.
Greedy, fp32, no EOS (always `--new` tokens). Reported: time to first token (the prompt's
forward), decode tokens/s (one step per token after the first, batch rows counted), the total.

On a GPU, the anchor of bench_cuda_decode (same shapes, GPT-2's random initialisation, no folder):

    python3 bench/models/pytorch_generate.py --device cuda --random [--bf16] --batch 1 \
        --prompt 512 --new 512 --repeat 3

--bf16 runs the forward under autocast(bfloat16), as bench_cuda_decode --bf16 multiplies bf16
copies of the weights. Each step's argmax is read back to the host, as a generation loop does
(and as bench_cuda_decode's steps do), so a step's time includes its synchronisation.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_models as mt  # noqa: E402  (sets torch threads to 1 on import; reset below)
from pytorch_train import load_weights  # noqa: E402


def forward(P, cfg, ids, past, start):
    """GPT2LMHeadModel.forward over new tokens `ids` (B,T) at positions start..start+T-1 with the
    past (k, v) per layer; returns last-position logits (B,V) and the new past."""
    B, T = ids.shape
    H, nh = cfg["n_embd"], cfg["n_head"]
    hd = H // nh
    eps = cfg["layer_norm_epsilon"]
    dev = ids.device
    pos = torch.arange(start, start + T, device=dev).unsqueeze(0)
    h = F.embedding(ids, P["transformer.wte.weight"]) + F.embedding(pos, P["transformer.wpe.weight"])
    new_past = []
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        x = F.layer_norm(h, (H,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        q, k, v = mt.hf_conv1d(x, P, p + "attn.c_attn").split(H, dim=2)
        q, k, v = (t.view(B, T, nh, hd).permute(0, 2, 1, 3) for t in (q, k, v))
        if past is not None:  # GPT2Attention with layer_past: torch.cat((past_key, key), dim=-2)
            k = torch.cat((past[i][0], k), dim=-2)
            v = torch.cat((past[i][1], v), dim=-2)
        new_past.append((k, v))
        Tk = k.shape[-2]
        w = torch.matmul(q, k.transpose(-1, -2)) / (hd ** 0.5)
        causal = torch.ones(Tk, Tk, dtype=torch.bool, device=dev).tril()[Tk - T:Tk, :Tk]
        w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, device=dev))
        a = torch.matmul(F.softmax(w, dim=-1), v).permute(0, 2, 1, 3).reshape(B, T, H)
        h = h + mt.hf_conv1d(a, P, p + "attn.c_proj")
        x = F.layer_norm(h, (H,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        h = h + mt.hf_conv1d(mt.gelu_new(mt.hf_conv1d(x, P, p + "mlp.c_fc")), P, p + "mlp.c_proj")
    h = F.layer_norm(h[:, -1, :], (H,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps)
    return F.linear(h, P["transformer.wte.weight"]), new_past


def llama_forward(P, cfg, ids, past, start):
    """LlamaForCausalLM.forward over new tokens `ids` (B,T) at positions start..start+T-1 with the
    past (k, v) per layer (kv heads, after rope); returns last-position logits (B,V) and the new
    past."""
    B, T = ids.shape
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    qkv_bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    dev = ids.device
    h = F.embedding(ids, P["model.embed_tokens.weight"])
    pos = torch.arange(start, start + T).unsqueeze(0)
    cos, sin = mt.rope_cos_sin(cfg, T, h.dtype, pos)
    cos, sin = cos.unsqueeze(1).to(dev), sin.unsqueeze(1).to(dev)
    new_past = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = mt.rms_norm(h, P[p + "input_layernorm.weight"], eps)
        q = mt.hf_linear(x, P, p + "self_attn.q_proj", None, qkv_bias).view(B, T, nh, hd).transpose(1, 2)
        k = mt.hf_linear(x, P, p + "self_attn.k_proj", None, qkv_bias).view(B, T, nkv, hd).transpose(1, 2)
        v = mt.hf_linear(x, P, p + "self_attn.v_proj", None, qkv_bias).view(B, T, nkv, hd).transpose(1, 2)
        q = (q * cos) + (mt.rotate_half(q) * sin)
        k = (k * cos) + (mt.rotate_half(k) * sin)
        if past is not None:  # DynamicCache.update: torch.cat((past_key, key), dim=-2)
            k = torch.cat((past[i][0], k), dim=-2)
            v = torch.cat((past[i][1], v), dim=-2)
        new_past.append((k, v))
        Tk = k.shape[-2]
        kr, vr = mt.repeat_kv(k, nh // nkv), mt.repeat_kv(v, nh // nkv)
        w = torch.matmul(q, kr.transpose(2, 3)) * hd ** -0.5
        causal = torch.ones(Tk, Tk, dtype=torch.bool, device=dev).tril()[Tk - T:Tk, :Tk]
        w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, device=dev))
        a = torch.matmul(F.softmax(w, dim=-1), vr).transpose(1, 2).reshape(B, T, nh * hd)
        h = h + mt.hf_linear(a, P, p + "self_attn.o_proj", None)
        x = mt.rms_norm(h, P[p + "post_attention_layernorm.weight"], eps)
        gate = F.silu(mt.hf_linear(x, P, p + "mlp.gate_proj", None))
        h = h + mt.hf_linear(gate * mt.hf_linear(x, P, p + "mlp.up_proj", None), P,
                             p + "mlp.down_proj", None)
    h = mt.rms_norm(h[:, -1, :], P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else P["lm_head.weight"]
    return F.linear(h, head), new_past


def random_gpt2(layers, channels, heads, vocab, positions):
    """GPT-2's initialisation (N(0, 0.02), the residual projections scaled by 1/sqrt(2L)) in the
    folder's names and Conv1D (in, out) layout, for benchmarks without a model folder."""
    g = torch.Generator().manual_seed(42)
    C = channels

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    P = {"transformer.wte.weight": normal(vocab, C), "transformer.wpe.weight": normal(positions, C, std=0.01),
         "transformer.ln_f.weight": torch.ones(C), "transformer.ln_f.bias": torch.zeros(C)}
    proj = 0.02 / (2 * layers) ** 0.5
    for i in range(layers):
        p = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            P[p + ln + ".weight"], P[p + ln + ".bias"] = torch.ones(C), torch.zeros(C)
        for name, n_in, n_out, std in (("attn.c_attn", C, 3 * C, 0.02), ("attn.c_proj", C, C, proj),
                                       ("mlp.c_fc", C, 4 * C, 0.02), ("mlp.c_proj", 4 * C, C, proj)):
            P[p + name + ".weight"], P[p + name + ".bias"] = normal(n_in, n_out, std=std), torch.zeros(n_out)
    cfg = {"n_embd": C, "n_head": heads, "n_layer": layers, "vocab_size": vocab,
           "layer_norm_epsilon": 1e-5}
    return P, cfg


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a GPT-2 or Llama-family folder (or --random: GPT-2)")
    ap.add_argument("--random", action="store_true", help="GPT-2 124M-shaped random weights")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--channels", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--bf16", action="store_true", help="autocast(bfloat16) (cuda)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest decode is reported")
    a = ap.parse_args(argv)
    if (a.model is None) == (not a.random):
        ap.error("expected exactly one of --model and --random")
    torch.set_num_threads(a.threads)
    if a.random:
        P, cfg = random_gpt2(a.layers, a.channels, a.heads, a.vocab, max(1024, a.prompt + a.new))
    else:
        with open(os.path.join(a.model, "config.json")) as f:
            cfg = json.load(f)
        P = load_weights(os.path.join(a.model, "model.safetensors"))
    step = llama_forward if cfg.get("model_type") in ("llama", "qwen2") else forward
    dev = torch.device(a.device)
    P = {k: v.to(dev) for k, v in P.items()}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"] - 1, (a.batch, a.prompt), generator=g).to(dev)
    steps = a.new - 1
    runs = []
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.bf16)
    with torch.no_grad(), autocast:
        step(P, cfg, ids[:, :8], None, 0)  # warm-up (allocator, kernels)
        for _ in range(max(1, a.repeat)):
            t0 = time.perf_counter()
            logits, past = step(P, cfg, ids, None, 0)
            nxt = logits.argmax(-1, keepdim=True)
            nxt.cpu()  # the host sees the token: a generation loop's synchronisation
            t1 = time.perf_counter()
            for s in range(steps):
                logits, past = step(P, cfg, nxt, past, a.prompt + s)
                nxt = logits.argmax(-1, keepdim=True)
                nxt.cpu()
            t2 = time.perf_counter()
            runs.append({"ttft_s": t1 - t0, "decode_s": t2 - t1, "total_s": t2 - t0,
                         "decode_tokens_per_s": a.batch * steps / (t2 - t1)})
    best = max(runs, key=lambda r: r["decode_tokens_per_s"])
    print(json.dumps({
        "engine": "torch", "torch": torch.__version__, "device": a.device, "bf16": a.bf16,
        "threads": a.threads, "batch": a.batch,
        "prompt": a.prompt, "new_tokens": a.new, **best, "runs": len(runs),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
