#!/usr/bin/env python3
"""PyTorch anchor for bench_cuda_train: GPT-2 124M training steps on one CUDA GPU, the same shapes
and the same step, in eager mode and under torch.compile, one JSON object per mode on stdout.

    python3 bench/models/pytorch_cuda_train.py [--batch 16] [--seq 1024] [--layers 12]
        [--channels 768] [--heads 12] [--vocab 50257] [--warmup 3] [--steps 10]
        [--modes eager,compile] [--peak-tflops 989] [--dtype bfloat16|float16] [--lora R]

The model is a plain GPT-2 (learned positions, pre-LayerNorm blocks, gelu tanh, tied LM head,
no dropout) written here in torch.nn, with attention through F.scaled_dot_product_attention
(causal; PyTorch picks its flash kernel). The step is what bench_cuda_train does: forward under
torch.autocast(bfloat16) (bf16 matmuls, fp32 master weights and optimizer state), mean
cross-entropy over next-token labels (the last position ignored), backward, clip_grad_norm_(1.0),
torch.optim.AdamW(lr 1e-4, weight decay 0.1 on matrices, fused=True), zero_grad. Random weights
(N(0, 0.02), GPT-2's scaled residual init) and one fixed random batch, as in the C++ bench.
Flops per token: 6 * (parameters except wpe) + 12 * L * C * T (PaLM appendix B, as llm.c);
MFU = flops/token * tokens/s / peak (989 TFLOP/s dense bf16 for an H100 SXM).
--dtype float16: autocast(float16) with torch.cuda.amp.GradScaler (the anchor for
bench_cuda_train --model --fp16); skipped steps are counted and still timed.
--lora R: LoRA fine-tuning as PEFT runs it with its defaults for GPT-2 (the anchor for
bench_cuda_train --model --lora R): c_attn gets lora_B(lora_A(dropout(x))) * alpha / r (rank R,
alpha 2R, dropout 0.05, A Kaiming-uniform, B zero), every other parameter is frozen, AdamW and
the clipping see the adapters only. The adapters are PEFT's own (peft.inject_adapter_in_model)
where peft imports, else the same forward written out here ("lora_impl" says which, and why
not PEFT). Flops per token: 4 per frozen parameter (forward and input gradient), 6 per
trainable one, plus attention's 12 * L * C * T.
"""
import argparse
import copy
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraLinear(nn.Module):
    """base(x) + lora_B(lora_A(dropout(x))) * scaling, PEFT's LoRA Linear forward."""

    def __init__(self, base, r, alpha, dropout):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling


def with_lora(model, r):
    """model with rank-r adapters on every c_attn: PEFT's where it imports, else LoraLinear."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
        config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules=["c_attn"])
        injected = inject_adapter_in_model(config, copy.deepcopy(model))  # model intact if it fails
        for name, p in injected.named_parameters():
            p.requires_grad_("lora_" in name)
        return injected, "peft"
    except Exception as e:  # no peft, or an API it does not have: the same forward by hand
        for block in model.h:
            block.c_attn = LoraLinear(block.c_attn, r, 2 * r, 0.05)
        return model, f"written out ({type(e).__name__}: {e})"


class Block(nn.Module):
    def __init__(self, C, H, L):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)
        for m in (self.c_attn, self.c_fc):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        for m in (self.c_proj, self.mlp_proj):
            nn.init.normal_(m.weight, std=0.02 / math.sqrt(2 * L))
            nn.init.zeros_(m.bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, V, T, L, C, H):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.h = nn.ModuleList(Block(C, H, L) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, labels):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied LM head
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)


def run(mode, a):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = GPT2(a.vocab, a.seq, a.layers, a.channels, a.heads)
    lora_impl = None
    if a.lora:
        for p in model.parameters():
            p.requires_grad_(False)
        model, lora_impl = with_lora(model, a.lora)
    model = model.to(dev)
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.dim() >= 2]
    no_decay = [p for p in trained if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, fused=True)
    g = torch.Generator(device="cpu").manual_seed(42)
    idx = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(dev)
    labels = torch.full_like(idx, -100)
    labels[:, :-1] = idx[:, 1:]
    fwd = torch.compile(model) if mode == "compile" else model
    fp16 = a.dtype == "float16"
    scaler = torch.cuda.amp.GradScaler(enabled=fp16)
    skipped = [0]

    def step():
        with torch.autocast("cuda", dtype=torch.float16 if fp16 else torch.bfloat16):
            loss = fwd(idx, labels)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(trained, 1.0)
        before = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        skipped[0] += fp16 and scaler.get_scale() < before
        opt.zero_grad(set_to_none=True)
        return loss.item(), norm.item()

    times, losses = [], []
    for i in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, norm = step()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(loss)
        if i >= a.warmup:
            times.append(dt)
    step_s = sum(times) / len(times)
    tokens_s = a.batch * a.seq / step_s
    params = sum(p.numel() for p in model.parameters())
    counted = [p for p in model.parameters() if p is not model.wpe.weight]
    param_flops = sum((6 if p.requires_grad else 4) * p.numel() for p in counted)
    flops_per_token = param_flops + 12 * a.layers * a.channels * a.seq
    return {
        "bench": "pytorch_cuda_train", "mode": mode, "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0), "batch": a.batch, "seq": a.seq, "layers": a.layers,
        "channels": a.channels, "vocab": a.vocab, "parameters": params, "lora_rank": a.lora,
        "lora_impl": lora_impl,
        "trainable_parameters": sum(p.numel() for p in trained),
        "step_ms": step_s * 1e3, "tokens_per_s": tokens_s,
        "mfu": flops_per_token * tokens_s / (a.peak_tflops * 1e12), "peak_tflops": a.peak_tflops,
        "dtype": a.dtype, "skipped_steps": int(skipped[0]), "first_loss": losses[0], "last_loss": losses[-1],
        "max_memory_bytes": torch.cuda.max_memory_allocated(),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--channels", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    p.add_argument("--lora", type=int, default=0, metavar="R")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    for mode in a.modes.split(","):
        print(json.dumps(run(mode, a)), flush=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
