#!/usr/bin/python3
"""PyTorch anchor for the training benchmark: one configuration per process (so peak RSS is that
configuration's own), printed as one JSON object on stdout.

    /usr/bin/python3 bench/models/pytorch_train.py --model build/bench-models/gpt2-124m \
        --mode full|lora --threads 2 --batch 4 --seq 256 [--dec-seq 64] [--warmup 1] [--steps 3]

The model is scripts/fixtures/make_tiny_models.py's pure-PyTorch port of the HF model
(gpt2_forward / llama_forward / t5_forward, eager attention, fp32, dropout off), imported, not copied; LoRA is its
`Lora` class (PEFT's forward: base(x) + B(A(x)) * alpha/r, here r=8, alpha=16). Training is what
HF Trainer does per step: loss.backward(), clip_grad_norm_(1.0), torch.optim.AdamW (lr 1e-4,
weight decay 0.01), zero_grad. Tokens per step: batch*seq, T5 batch*(seq + dec-seq).
Peak RSS: resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) at the end.
"""
import argparse
import json
import math
import os
import platform
import resource
import struct
import sys
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
import make_tiny_models as mt  # noqa: E402  (sets torch threads to 1 on import; reset below)

LORA_TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "t5": ["q", "k", "v", "o", "wi", "wo"],
}


def lora_mods(P, cfg, r, targets):
    """PEFT init (init_lora_weights=True): A Kaiming-uniform(a=sqrt(5)), B zero; (A (r,in), B (out,r))."""
    mods = {}
    for name, W in P.items():
        if not name.endswith(".weight") or W.dim() != 2:
            continue
        path = name[: -len(".weight")]
        if not any(path.endswith("." + t) for t in targets):
            continue
        # GPT-2 Conv1D weights are (in, out); T5 nn.Linear weights are (out, in)
        fin, fout = (W.shape[0], W.shape[1]) if cfg["model_type"] == "gpt2" else (W.shape[1], W.shape[0])
        A = torch.empty(r, fin)
        torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        mods[path] = [A.requires_grad_(True), torch.zeros(fout, r, requires_grad=True)]
    return mods


def load_weights(path):
    """F32 safetensors -> tensors, read straight into each tensor's storage (one copy in memory, as
    transformers' mmap-based loading ends up with; make_tiny_models.read_safetensors holds the whole
    file as bytes next to the tensors, which would inflate the peak RSS we report)."""
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        header.pop("__metadata__", None)
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            assert info["dtype"] == "F32", (name, info["dtype"])
            s, e = info["data_offsets"]
            t = torch.empty(info["shape"], dtype=torch.float32)
            f.seek(8 + n + s)
            assert f.readinto(t.numpy().reshape(-1).view("u1")) == e - s, name
            out[name] = t
    return out


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", choices=["full", "lora"], default="full")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--dec-seq", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t_load = time.perf_counter()
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    P = load_weights(os.path.join(a.model, "model.safetensors"))
    kind = "t5" if cfg["model_type"] == "t5" else "causal"
    spec = {"kind": kind, "cfg": cfg}
    V = cfg["vocab_size"]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, V, (a.batch, a.seq), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == "t5":
        labels = torch.randint(2, V, (a.batch, a.dec_seq), generator=g)
        batch["labels"] = labels
        batch["decoder_input_ids"] = mt.t5_shift_right(labels, cfg)
        tokens = a.batch * (a.seq + a.dec_seq)
    else:
        batch["labels"] = ids
        tokens = a.batch * a.seq

    if a.mode == "full":
        params = {k: v.requires_grad_(True) for k, v in P.items()}
        plist = list(params.values())
        fwd = lambda: mt.forward(spec, params, batch)[1]  # noqa: E731
    else:
        assert a.lora_alpha / a.lora_r == mt.LORA_SCALING, "make_tiny_models.Lora uses a fixed alpha/r"
        mods = lora_mods(P, cfg, a.lora_r, LORA_TARGETS[cfg["model_type"]])
        plist = [t for k in sorted(mods) for t in mods[k]]
        lora = mt.Lora(mods)
        fwd = lambda: mt.forward(spec, P, batch, lora)[1]  # noqa: E731
    opt = torch.optim.AdamW(plist, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    load_s = time.perf_counter() - t_load

    times, fwd_s, bwd_s, opt_s = [], [], [], []
    loss_v = float("nan")
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = fwd()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(plist, max_norm=1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        loss_v = float(loss)
        print(f"step {s + 1}: {t3 - t0:.3f} s (fwd {t1 - t0:.3f} bwd {t2 - t1:.3f} opt {t3 - t2:.3f}) loss {loss_v:.4f}",
              file=sys.stderr, flush=True)
        if s >= a.warmup:
            times.append(t3 - t0), fwd_s.append(t1 - t0), bwd_s.append(t2 - t1), opt_s.append(t3 - t2)
    out = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "blas": "OpenBLAS (Debian, openmp)" if "openblas" in open("/proc/self/maps").read().lower() else "unknown",
        "mode": a.mode,
        "threads": torch.get_num_threads(),
        "parameters": sum(t.numel() for t in P.values()),
        "trainable": sum(t.numel() for t in plist),
        "tokens_per_step": tokens,
        "load_s": round(load_s, 3),
        "step_s": [round(t, 4) for t in times],
        "forward_s": [round(t, 4) for t in fwd_s],
        "backward_s": [round(t, 4) for t in bwd_s],
        "optimizer_s": [round(t, 4) for t in opt_s],
        "tokens_per_s": tokens / min(times),
        "last_loss": loss_v,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
