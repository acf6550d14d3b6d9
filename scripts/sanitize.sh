#!/usr/bin/env bash
# The C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer, in build-asan/ (its own
# build; CMake's S2S_SANITIZE). With the SIMT simulator the CUDA kernels run as C++ too, so every
# kernel's global-memory access is checked against what was handed out: the simulated
# cudaMalloc's requested bytes (its 256-byte rounding is poisoned) and each device-arena
# allocation (padding and never-used space poisoned; DeviceArena's BlockSource::mark). Any
# report fails the test (-fno-sanitize-recover). Up to 25 minutes to build and 8 to run on two
# cores, so not part of `npm test`; run it after touching kernels, the arenas or the simulator.
#   bash scripts/sanitize.sh [ctest -R filter]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DS2S_TESTS=ON -DS2S_CUDA=OFF \
  -DS2S_SANITIZE=address,undefined > /dev/null
cmake --build build-asan -j "$(nproc)"
# A test asks for an impossible allocation on purpose (S2S_OUT_OF_MEMORY): ASan returns null
# for it instead of aborting. Leaks are not this check's business (static caches live on).
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
ctest --test-dir build-asan --output-on-failure --timeout 3000 --parallel "$(nproc)" \
  ${1:+-R "$1"}
