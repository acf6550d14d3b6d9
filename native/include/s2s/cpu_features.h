// What the CPU we run on can do, found once at run time (cpuid + xgetbv on x86, fixed on arm64),
// and which instruction-set path the kernels use. One x86-64 build carries every path; the best
// one the CPU and OS support is chosen at start and can be lowered for tests and bug reports
// (set_isa, or the S2S_ISA environment variable: scalar | avx2 | avx512 | avx512_bf16 | neon).
#pragma once
#include <string>
#include <vector>

namespace s2s {

// Ordered: a higher value implies every lower x86 path works too.
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3, Neon = 10 };

struct CpuFeatures {
  std::string vendor, brand;
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_fp16 = false, amx_bf16 = false, amx_tile = false;
  bool neon = false;
  bool os_saves_zmm = false;  // XCR0 says the OS preserves AVX-512 state
};

const CpuFeatures& cpu_features();
Isa best_isa();                  // the best path this CPU and this build support
Isa active_isa();                // the one in use now
void set_isa(Isa isa);           // throws S2S_ARGUMENT if the CPU or build cannot run it
Isa parse_isa(const std::string& name);  // throws S2S_ARGUMENT on an unknown name
const char* isa_name(Isa isa);
std::vector<Isa> supported_isas();  // every path that runs here, lowest first
std::vector<std::string> cpu_feature_names();  // flags found, for `doctor`

}  // namespace s2s
