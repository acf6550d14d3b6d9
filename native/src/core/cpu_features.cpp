// Run-time CPU feature detection and the choice of kernel path.
// x86: cpuid leaves 1 and 7 give the instruction sets; xgetbv(0) tells whether the OS saves the
// YMM/ZMM state (a CPU with AVX-512 under an OS that does not save it must not use it).
#include "s2s/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "s2s/error.h"

#if defined(__x86_64__) || defined(_M_X64)
#define S2S_X86 1
#include <cpuid.h>
#endif

namespace s2s {

namespace {

#if S2S_X86
uint64_t read_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if S2S_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  char vendor[13] = {};
  __get_cpuid(0, &a, &b, &c, &d);
  const unsigned max_leaf = a;
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;
  char brand[49] = {};
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &a, &b, &c, &d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
  }
  f.brand = brand;
  while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();

  __get_cpuid(1, &a, &b, &c, &d);
  f.sse42 = c & (1u << 20);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  const bool osxsave = c & (1u << 27);
  const bool avx_cpu = c & (1u << 28);
  uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6;
  f.os_saves_zmm = (xcr0 & 0xe6) == 0xe6;
  f.avx = avx_cpu && os_ymm;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = f.avx && (b & (1u << 5));
    const bool z = f.os_saves_zmm;
    f.avx512f = z && (b & (1u << 16));
    f.avx512dq = z && (b & (1u << 17));
    f.avx512bw = z && (b & (1u << 30));
    f.avx512vl = z && (b & (1u << 31));
    f.avx512_fp16 = z && (d & (1u << 23));
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = z && (a & (1u << 5));
  }
  f.fma = f.fma && f.avx;
  f.f16c = f.f16c && f.avx;  // VEX-encoded: needs the OS to save YMM state too
#elif defined(__aarch64__)
  f.vendor = "arm64";
  f.neon = true;
#endif
  return f;
}

bool isa_runs_here(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Scalar: return true;
#if S2S_X86
    // F16C: the AVX2 and AVX-512 kernel files are compiled with -mf16c and the fp16 GEMM
    // packing uses it (every AVX2 CPU has it; a VM that hides it gets the scalar path).
    case Isa::Avx2: return f.avx2 && f.fma && f.f16c;
    case Isa::Avx512:
      return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma && f.f16c;
    case Isa::Avx512Bf16: return isa_runs_here(Isa::Avx512) && f.avx512_bf16;
#endif
#if defined(__aarch64__)
    case Isa::Neon: return f.neon;
#endif
    default: return false;
  }
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{[] {
    Isa isa = best_isa();
    if (const char* env = std::getenv("S2S_ISA")) {
      // A bad value here is ignored rather than thrown: this runs inside a static initialiser.
      try {
        Isa wanted = parse_isa(env);
        if (isa_runs_here(wanted)) isa = wanted;
      } catch (const Error&) {
      }
    }
    return static_cast<int>(isa);
  }()};
  return slot;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16, Isa::Neon}) {
    if (isa_runs_here(isa)) out.push_back(isa);
  }
  return out;
}

Isa best_isa() { return supported_isas().back(); }

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  if (!isa_runs_here(isa)) {
    fail(code::kArgument, "set_isa", "expected an instruction set this CPU supports, got ",
         isa_name(isa));
  }
  active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512_bf16";
    case Isa::Neon: return "neon";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16, Isa::Neon}) {
    if (name == isa_name(isa)) return isa;
  }
  fail(code::kArgument, "set_isa",
       "expected one of scalar, avx2, avx512, avx512_bf16, neon, got '", name, "'");
}

std::vector<std::string> cpu_feature_names() {
  const CpuFeatures& f = cpu_features();
  std::vector<std::string> out;
  const std::pair<bool, const char*> flags[] = {
      {f.sse42, "sse4.2"},        {f.avx, "avx"},           {f.avx2, "avx2"},
      {f.fma, "fma"},             {f.f16c, "f16c"},         {f.avx512f, "avx512f"},
      {f.avx512bw, "avx512bw"},   {f.avx512vl, "avx512vl"}, {f.avx512dq, "avx512dq"},
      {f.avx512_bf16, "avx512_bf16"}, {f.avx512_fp16, "avx512_fp16"},
      {f.amx_tile, "amx_tile"},   {f.amx_bf16, "amx_bf16"}, {f.neon, "neon"}};
  for (const auto& [on, name] : flags) {
    if (on) out.emplace_back(name);
  }
  return out;
}

}  // namespace s2s
