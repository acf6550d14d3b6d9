#!/usr/bin/env python3
"""The GPU session's figures side by side: reads the JSON lines scripts/cuda-gpu-session.sh left in
its output folder and prints our tokens/s and MFU against PyTorch eager and torch.compile (the
issue's bar: at least eager, within 20% of compile), decoding against PyTorch eager, the
cached-attention op against the memory bandwidth, and where the time of a step goes. Writes the
same to summary.json there. Missing files are skipped (a partial session still summarises).

    python3 scripts/cuda-gpu-summary.py [build-gpu/out]
"""
import json
import os
import sys


def records(folder, name):
    """The JSON objects of one output file (tee'd logs may interleave other lines)."""
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def first(rs, **match):
    for r in rs:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main(folder):
    s = {}
    ops = first(records(folder, "bench_cuda_train.json"))
    model = first(records(folder, "bench_cuda_train_model.json"))
    model16 = first(records(folder, "bench_cuda_train_model_fp16.json"))
    torch = records(folder, "bench_pytorch.json")
    torch16 = first(records(folder, "bench_pytorch_fp16.json"))
    eager, compiled = first(torch, mode="eager"), first(torch, mode="compile")
    tok = lambda r: r and r.get("tokens_per_s")
    lines = []
    if any((ops, model, eager, compiled)):
        ref = model or ops or eager or compiled
        lines.append(f"Training, GPT-2 124M, batch {ref.get('batch')} x {ref.get('seq')}, bf16:")
        for label, r in (("ours, hand-composed ops", ops), ("ours, model path", model),
                         ("PyTorch eager", eager), ("torch.compile", compiled)):
            if r:
                lines.append(f"  {label:26s} {r['tokens_per_s']:>10.0f} tokens/s  MFU {r['mfu']:.3f}")
        s["train"] = {
            "model_over_eager": ratio(tok(model), tok(eager)),
            "model_over_compile": ratio(tok(model), tok(compiled)),
            "ops_over_eager": ratio(tok(ops), tok(eager)),
            "ops_over_compile": ratio(tok(ops), tok(compiled)),
        }
        for k, v in s["train"].items():
            if v is not None:
                lines.append(f"  {k:26s} {v:.3f}")
        m, c = s["train"]["model_over_eager"], s["train"]["model_over_compile"]
        if m is not None and c is not None:
            met = m >= 1.0 and c >= 0.8
            lines.append(f"  bar (>= eager, >= 0.8 x compile): {'met' if met else 'not met'}")
            s["train"]["bar_met"] = met
    smollm = first(records(folder, "bench_cuda_train_smollm.json"))
    if smollm:
        lines.append(f"Training, SmolLM-135M shape (Llama, model path), batch {smollm.get('batch')} "
                     f"x {smollm.get('seq')}, bf16: {smollm['tokens_per_s']:.0f} tokens/s  "
                     f"MFU {smollm['mfu']:.3f}")
        s["train_smollm"] = {"tokens_per_s": smollm["tokens_per_s"], "mfu": smollm["mfu"]}
    small = first(records(folder, "bench_cuda_train_smollm_small.json"))
    small_eager = first(records(folder, "bench_cuda_train_smollm_small_no_replay.json"))
    if small and small_eager:
        speedup = small["tokens_per_s"] / small_eager["tokens_per_s"]
        lines.append(f"Training, SmolLM-135M shape, batch 4 x 512: replayed micro-steps "
                     f"{small['tokens_per_s']:.0f} tokens/s ({small.get('replayed_steps')} of the "
                     f"timed steps replayed), every op issued {small_eager['tokens_per_s']:.0f} "
                     f"tokens/s: {speedup:.2f}x")
        s["train_smollm_small"] = {"replayed_tokens_per_s": small["tokens_per_s"],
                                   "issued_tokens_per_s": small_eager["tokens_per_s"],
                                   "replayed_steps": small.get("replayed_steps"), "ratio": speedup}
        if "dry_run_ms" in small:
            # The host's share of a replayed step: what overlapping it with the GPU could win.
            share = small["dry_run_ms"] / small["step_ms"]
            lines.append(f"  dry runs {small['dry_run_ms']:.3f} ms of the {small['step_ms']:.3f} ms "
                         f"step ({share:.1%})")
            s["train_smollm_small"]["dry_run_share"] = share
        if "dry_run_loop_ms" in small:
            # The same host work back to back, no kernels disturbing the host's caches.
            lines.append(f"  a dry run alone (--dry-runs): {small['dry_run_loop_ms']:.3f} ms")
            s["train_smollm_small"]["dry_run_loop_ms"] = small["dry_run_loop_ms"]
    if model and model.get("gemm_rounded_through_scratch"):
        # GPT-2's q, k, v GEMMs write bf16 in cuBLASLt's epilogue; where it had no algorithm for
        # a 16-bit D with an f32 bias they went through f32 scratch, saving nothing.
        lines.append(f"  q, k, v GEMMs through f32 scratch (no 16-bit epilogue with an f32 bias): "
                     f"{model['gemm_rounded_through_scratch']} calls")
        s.setdefault("train", {})["gemm_rounded_through_scratch"] = \
            model["gemm_rounded_through_scratch"]
    if model and model.get("gemm_onto_through_add"):
        # The residual branches' last linears add the residual as cuBLASLt's C input; where it
        # refused C beside a separate D they wrote the product and a kernel added, saving nothing.
        lines.append(f"  residual GEMMs through a separate add (cuBLASLt refused C beside D): "
                     f"{model['gemm_onto_through_add']} calls")
        s.setdefault("train", {})["gemm_onto_through_add"] = model["gemm_onto_through_add"]
    unpadded = first(records(folder, "bench_cuda_train_model_unpadded.json"))
    if unpadded and model:
        # The head's logits with rows of exactly V elements against rows padded to 64.
        s["padded_logits"] = {"over_unpadded": ratio(tok(model), tok(unpadded))}
        lines.append(f"Logits rows padded (model path, bf16): {model['tokens_per_s']:.0f} tokens/s "
                     f"= {s['padded_logits']['over_unpadded']:.3f} x unpadded "
                     f"({unpadded['tokens_per_s']:.0f})")
    chunked = first(records(folder, "bench_cuda_train_model_chunked.json"))
    if chunked and model:
        s["chunked_loss"] = {
            "over_plain": ratio(tok(chunked), tok(model)),
            "arena_peak_bytes": chunked.get("arena_peak_bytes"),
            "plain_arena_peak_bytes": model.get("arena_peak_bytes"),
        }
        mib = lambda b: (b or 0) / 2**20
        lines.append("Training with the chunked loss (model path, bf16):")
        lines.append(f"  {chunked['tokens_per_s']:.0f} tokens/s = "
                     f"{s['chunked_loss']['over_plain']:.3f} x the plain loss; arena peak "
                     f"{mib(chunked.get('arena_peak_bytes')):.0f} MiB against "
                     f"{mib(model.get('arena_peak_bytes')):.0f} MiB")
    if model16 or torch16:
        s["train_fp16"] = {"model_over_eager": ratio(tok(model16), tok(torch16))}
        lines.append("Training, fp16 with loss scaling:")
        for label, r in (("ours, model path", model16), ("PyTorch eager", torch16)):
            if r:
                lines.append(f"  {label:26s} {r['tokens_per_s']:>10.0f} tokens/s")
        if s["train_fp16"]["model_over_eager"] is not None:
            lines.append(f"  model_over_eager           {s['train_fp16']['model_over_eager']:.3f}")
    lora = first(records(folder, "bench_cuda_train_model_lora.json"))
    torch_lora = records(folder, "bench_pytorch_lora.json")
    lora_eager, lora_compiled = first(torch_lora, mode="eager"), first(torch_lora, mode="compile")
    if any((lora, lora_eager, lora_compiled)):
        rank = (lora or lora_eager or lora_compiled).get("lora_rank")
        lines.append(f"LoRA fine-tuning (rank {rank}, c_attn), bf16:")
        for label, r in (("ours, model path", lora), ("PyTorch eager", lora_eager),
                         ("torch.compile", lora_compiled)):
            if r:
                lines.append(f"  {label:26s} {r['tokens_per_s']:>10.0f} tokens/s  MFU {r['mfu']:.3f}")
        if lora and "replayed_steps" in lora:
            lines.append(f"  ours: {lora['replayed_steps']} of the timed steps replayed "
                         f"(LoRA's dropout included)")
        impl = (lora_eager or lora_compiled or {}).get("lora_impl")
        if impl:
            lines.append(f"  PyTorch's adapters: {impl}")
        s["train_lora"] = {"model_over_eager": ratio(tok(lora), tok(lora_eager)),
                           "model_over_compile": ratio(tok(lora), tok(lora_compiled))}
        for k, v in s["train_lora"].items():
            if v is not None:
                lines.append(f"  {k:26s} {v:.3f}")
    for dtype, suffix in (("float32", ""), ("bfloat16", "_bf16")):
        ours = first(records(folder, f"bench_cuda_decode{suffix}.json"))
        theirs = first(records(folder, f"bench_pytorch_decode{suffix}.json"))
        if not (ours or theirs):
            continue
        g = ours["generate"] if ours else None
        key = f"decode_{dtype}"
        s[key] = {"ours_tokens_per_s": g and g["decode_tokens_per_s"],
                  "torch_tokens_per_s": theirs and theirs["decode_tokens_per_s"]}
        s[key]["ours_over_torch"] = ratio(s[key]["ours_tokens_per_s"], s[key]["torch_tokens_per_s"])
        batch = (g or theirs).get("batch")
        lines.append(f"Decoding, greedy, batch {batch}, {dtype} compute:")
        if g:
            lines.append(f"  ours                       {g['decode_tokens_per_s']:>10.1f} tokens/s"
                         f"  (prefill {g['prefill_ms']:.1f} ms, "
                         f"{g.get('replayed_steps', 0)} of {g.get('decode_steps', 0)} steps replayed)")
        plain = ours.get("generate_op_by_op") if ours else None
        if g and plain:
            lines.append(f"  ours, op by op (no replay) {plain['decode_tokens_per_s']:>10.1f} tokens/s")
            s[key]["replay_over_op_by_op"] = ratio(g["decode_tokens_per_s"],
                                                   plain["decode_tokens_per_s"])
            if s[key]["replay_over_op_by_op"] is not None:
                lines.append(f"  replay_over_op_by_op       {s[key]['replay_over_op_by_op']:.3f}")
        if theirs:
            lines.append(f"  PyTorch eager              {theirs['decode_tokens_per_s']:>10.1f} tokens/s"
                         f"  (prefill {1e3 * theirs['ttft_s']:.1f} ms)")
        if s[key]["ours_over_torch"] is not None:
            lines.append(f"  ours_over_torch            {s[key]['ours_over_torch']:.3f}")
        if ours and dtype == "float32":
            s["attention_cached"] = ours["attention_cached"]
            lines.append(f"Cached attention (peak {ours['peak_gbps']:.0f} GB/s):")
            f32_us = {}
            for a in ours["attention_cached"]:
                cache = a.get("cache", "float32")
                line = (f"  {a['keys']:>6d} keys, {cache:>8s} cache  {a['us_per_call']:8.2f} us  "
                        f"{a['gb_per_s']:8.1f} GB/s  {a['fraction_of_peak']:.3f} of peak")
                if cache == "float32":
                    f32_us[a["keys"]] = a["us_per_call"]
                elif a["keys"] in f32_us:
                    line += f"  ({f32_us[a['keys']] / a['us_per_call']:.2f}x the f32 cache)"
                lines.append(line)
    for name, label, key in (
            ("bench_cuda_profile.json", "tensor-core attention", "mma"),
            ("bench_cuda_profile_tested_tiles.json",
             "tensor-core attention, every tile tested", "mma_tested_tiles"),
            ("bench_cuda_profile_attention_fp32.json", "fp32 attention", "fp32")):
        r = first(records(folder, name))
        if r and "profile_ms" in r:
            total = sum(r["profile_ms"].values())
            top = sorted(r["profile_ms"].items(), key=lambda kv: -kv[1])
            lines.append(f"Where a step's time goes ({label}; synchronised per op, {total:.1f} ms):")
            for fam, ms in top:
                lines.append(f"  {fam:26s} {ms:8.2f} ms  {ms / total:6.1%}")
            s["profile_" + key] = r["profile_ms"]
    for name, label, key in (("bench_cuda_trace_model.json", "model path", "trace_model"),
                             ("bench_cuda_trace_model_lora.json", "model path, LoRA", "trace_lora"),
                             ("bench_cuda_trace_smollm_small.json", "SmolLM-135M, batch 4 x 512",
                              "trace_smollm_small")):
        r = first(records(folder, name))
        t = r and r.get("trace")
        if not t:
            continue
        if "unavailable" in t:
            lines.append(f"GPU trace ({label}): unavailable: {t['unavailable']}")
            continue
        lines.append(f"GPU trace ({label}; CUPTI): busy {t['gpu_busy_ms_per_step']:.1f} of "
                     f"{t['window_ms_per_step']:.1f} ms a step ({t['busy_fraction']:.1%}); "
                     f"kernels by time:")
        for k in t["kernels"][:15]:
            lines.append(f"  {k['ms_per_step']:8.3f} ms  {k['calls_per_step']:7.1f} x  {k['name'][:90]}")
        lines.append(f"  {t['other_kernels_ms_per_step']:8.3f} ms  the other kernels")
        s[key] = t
    text = "\n".join(lines) if lines else f"no bench output in {folder}"
    print(text)
    if not os.path.isdir(folder):
        return
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build-gpu/out")
