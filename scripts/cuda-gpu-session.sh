#!/usr/bin/env bash
# One command for a GPU machine (nvcc, cuBLAS from pip's nvidia-cublas, PyTorch, CMake; no Node):
# builds the CUDA backend with the C++ tests and benches (no addon), runs the CUDA tests (the ops,
# then whole models on the GPU against the CPU) and the rest of ctest, then GPT-2 124M training
# steps in bf16 with our CUDA ops composed by hand, through the model path (s2s::Model on the
# CUDA backend, what `s2s-train train --device cuda` runs), and with PyTorch (eager and
# torch.compile) on the same shapes, and a SmolLM-135M-shaped Llama through the model path
# (throughput, and the GPU's busy share at a small batch); then greedy decoding of GPT-2 124M
# (bench_cuda_decode, with PyTorch eager as its anchor). Logs and JSON go to $OUT (default
# build-gpu/out).
#
#   bash scripts/cuda-gpu-session.sh                 # everything (about 10 minutes on an H100)
#   STEPS=5 BATCH=8 bash scripts/cuda-gpu-session.sh  # smaller bench
#   ONLY=build bash scripts/cuda-gpu-session.sh       # build | tests | bench | torch
# Where one command may run 10 minutes at most, run ONLY=build, tests, bench, torch as four calls
# on one warm machine (build-gpu/ stays between them; tests and bench rebuild incrementally).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/out}
BATCH=${BATCH:-16}
SEQ=${SEQ:-1024}
STEPS=${STEPS:-10}
ONLY=${ONLY:-build,tests,bench,torch}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
want() { [[ ",$ONLY," == *",$1,"* ]]; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
# cuBLASLt is loaded at run time (backends/cuda/cublaslt_api.h); the loader looks in the usual
# site-packages itself, but a venv or conda Python may keep pip's nvidia packages elsewhere, so
# put their lib folders on the loader's path (it takes the runtime's major version first).
nvidia_libs=$(python3 -c "import nvidia, os; print(':'.join(os.path.join(p, s, 'lib') for p in nvidia.__path__ for s in ('cu13', 'cu12', 'cublas', 'cuda_cupti') if os.path.isdir(os.path.join(p, s, 'lib'))))" 2>/dev/null)
[ -n "$nvidia_libs" ] && export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if want build || want tests || want bench; then
  if [ ! -f build-gpu/CMakeCache.txt ]; then
    gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S . -B build-gpu "${gen[@]}" -DS2S_TESTS=ON -DS2S_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" 2>&1 | tee "$OUT/configure.log" | grep -i "cuda" || true
  fi
  start=$SECONDS
  cmake --build build-gpu -j "$JOBS" > "$OUT/build.log" 2>&1 || { tail -n 60 "$OUT/build.log"; exit 1; }
  echo "build: $((SECONDS - start)) s"
fi
status=0
if want tests; then
  ./build-gpu/test_cuda_ops 2>&1 | tee "$OUT/test_cuda_ops.log" || status=1
  ./build-gpu/test_cuda_models 2>&1 | tee "$OUT/test_cuda_models.log" || status=1
  ctest --test-dir build-gpu --timeout 600 --parallel "$JOBS" 2>&1 | tail -n 40 | tee "$OUT/ctest.log" || status=1
fi
if want bench; then
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" \
    > "$OUT/bench_cuda_train.json" 2> "$OUT/bench_cuda_train.log" || status=1
  tail -n 4 "$OUT/bench_cuda_train.log"; cat "$OUT/bench_cuda_train.json"
  # The same step through the model path (nn layers, graph, ParamStore, optimizer_step).
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --model \
    > "$OUT/bench_cuda_train_model.json" 2> "$OUT/bench_cuda_train_model.log" || status=1
  tail -n 4 "$OUT/bench_cuda_train_model.log"; cat "$OUT/bench_cuda_train_model.json"
  # The same with the logits' rows unpadded (50,257 elements, as torch eager lays them out): what
  # the 16-byte aligned rows of the head's GEMMs gain (Backend::aligned_row_stride).
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --model \
    --unpadded-logits > "$OUT/bench_cuda_train_model_unpadded.json" \
    2> "$OUT/bench_cuda_train_model_unpadded.log" || status=1
  cat "$OUT/bench_cuda_train_model_unpadded.json"
  # The chunked loss (train.chunked_loss): what chunking the head costs (its gradients made in
  # the forward, the seed known), what the logits' memory was (arena_peak_bytes against the run
  # above).
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --model \
    --chunked-loss > "$OUT/bench_cuda_train_model_chunked.json" \
    2> "$OUT/bench_cuda_train_model_chunked.log" || status=1
  tail -n 4 "$OUT/bench_cuda_train_model_chunked.log"
  cat "$OUT/bench_cuda_train_model_chunked.json"
  # fp16 compute with the loss scaler (the trainer's float16), same path.
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --model --fp16 \
    > "$OUT/bench_cuda_train_model_fp16.json" 2> "$OUT/bench_cuda_train_model_fp16.log" || status=1
  tail -n 4 "$OUT/bench_cuda_train_model_fp16.log"; cat "$OUT/bench_cuda_train_model_fp16.json"
  # LoRA fine-tuning (rank 8 on c_attn, PEFT's defaults for GPT-2), same path.
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --model --lora 8 \
    > "$OUT/bench_cuda_train_model_lora.json" 2> "$OUT/bench_cuda_train_model_lora.log" || status=1
  tail -n 4 "$OUT/bench_cuda_train_model_lora.log"; cat "$OUT/bench_cuda_train_model_lora.json"
  # What the GPU did during the model path's steps (CUPTI, no synchronisation per op): its busy
  # share of a step (the rest is waiting for the host) and the kernels, full training and LoRA.
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --warmup 2 --steps 3 --model --trace \
    > "$OUT/bench_cuda_trace_model.json" 2>> "$OUT/bench_cuda_train.log" || status=1
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --warmup 2 --steps 3 --model --lora 8 \
    --trace > "$OUT/bench_cuda_trace_model_lora.json" 2>> "$OUT/bench_cuda_train.log" || status=1
  # A Llama-family model, SmolLM-135M's shape (30 layers: about 1,200 launches and GEMMs a step,
  # bench_cuda_train_sim counts them): its throughput at the main batch, and the GPU's busy share
  # at a small one (4 x 512), where the host's calls may be what a step waits for.
  smollm=(--model --arch llama --layers 30 --channels 576 --heads 9 --kv-heads 3 \
          --intermediate 1536 --vocab 49152)
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" "${smollm[@]}" \
    > "$OUT/bench_cuda_train_smollm.json" 2>> "$OUT/bench_cuda_train.log" || status=1
  cat "$OUT/bench_cuda_train_smollm.json"
  ./build-gpu/bench_cuda_train --batch 4 --seq 512 --warmup 2 --steps 5 "${smollm[@]}" --trace \
    > "$OUT/bench_cuda_trace_smollm_small.json" 2>> "$OUT/bench_cuda_train.log" || status=1
  # At that small batch, the micro-step recorded and replayed (the default, as the trainer runs
  # it) against every op issued by the host (--no-replay): tokens/s both ways.
  ./build-gpu/bench_cuda_train --batch 4 --seq 512 --warmup 3 --steps 10 "${smollm[@]}" \
    --dry-runs 1000 > "$OUT/bench_cuda_train_smollm_small.json" 2>> "$OUT/bench_cuda_train.log" || status=1
  ./build-gpu/bench_cuda_train --batch 4 --seq 512 --warmup 3 --steps 10 "${smollm[@]}" \
    --no-replay > "$OUT/bench_cuda_train_smollm_small_no_replay.json" \
    2>> "$OUT/bench_cuda_train.log" || status=1
  cat "$OUT/bench_cuda_train_smollm_small.json" "$OUT/bench_cuda_train_smollm_small_no_replay.json"
  # Where the time goes (synchronised per op, so slower overall): mean ms per step per op family,
  # with the tensor-core attention and with the fp32 attention kernels.
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --warmup 1 --steps 3 --profile \
    > "$OUT/bench_cuda_profile.json" 2>> "$OUT/bench_cuda_train.log" || status=1
  cat "$OUT/bench_cuda_profile.json"
  ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --warmup 1 --steps 3 --profile \
    --attention-fp32 > "$OUT/bench_cuda_profile_attention_fp32.json" 2>> "$OUT/bench_cuda_train.log" || status=1
  cat "$OUT/bench_cuda_profile_attention_fp32.json"
  # The tensor-core attention with every tile through the score loops' tested copy: what the
  # full tiles' untested copy saves (attention's rows against the first profile).
  S2S_ATTENTION_FULL_TILES=0 ./build-gpu/bench_cuda_train --batch "$BATCH" --seq "$SEQ" --warmup 1 \
    --steps 3 --profile > "$OUT/bench_cuda_profile_tested_tiles.json" \
    2>> "$OUT/bench_cuda_train.log" || status=1
  cat "$OUT/bench_cuda_profile_tested_tiles.json"
  # Decoding: greedy generate at batch 1 (512-token prompt, 512 new), fp32 and bf16 compute, and
  # the cached-attention op against the memory bandwidth.
  for dt in "" --bf16; do
    ./build-gpu/bench_cuda_decode $dt > "$OUT/bench_cuda_decode${dt/--/_}.json" \
      2>> "$OUT/bench_cuda_decode.log" || status=1
    cat "$OUT/bench_cuda_decode${dt/--/_}.json"
  done
fi
if want torch; then
  PYTHONUNBUFFERED=1 python3 bench/models/pytorch_cuda_train.py --batch "$BATCH" --seq "$SEQ" \
    --steps "$STEPS" 2>&1 | tee "$OUT/bench_pytorch.json" || status=1
  PYTHONUNBUFFERED=1 python3 bench/models/pytorch_cuda_train.py --batch "$BATCH" --seq "$SEQ" \
    --steps "$STEPS" --modes eager --dtype float16 2>&1 | tee "$OUT/bench_pytorch_fp16.json" || status=1
  PYTHONUNBUFFERED=1 python3 bench/models/pytorch_cuda_train.py --batch "$BATCH" --seq "$SEQ" \
    --steps "$STEPS" --lora 8 2>&1 | tee "$OUT/bench_pytorch_lora.json" || status=1
  # The decoding anchor: the same shapes as bench_cuda_decode, eager, concatenating KV cache.
  for dt in "" --bf16; do
    PYTHONUNBUFFERED=1 python3 bench/models/pytorch_generate.py --device cuda --random $dt \
      --batch 1 --prompt 512 --new 512 --repeat 3 2>&1 | tee "$OUT/bench_pytorch_decode${dt/--/_}.json" || status=1
  done
fi
# The figures side by side (whatever this and earlier calls left in $OUT): summary.txt/.json.
python3 scripts/cuda-gpu-summary.py "$OUT" | tee "$OUT/summary.txt"
exit $status
