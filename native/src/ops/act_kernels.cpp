// Baseline (SSE2 / NEON / scalar) build of the activation kernels, and the ISA dispatch.
#include "s2s/cpu_features.h"

#define S2S_ACT_KERNELS_NAME act_kernels_base
#define S2S_ACT_KERNELS_LABEL "baseline"
#include "ops/act_kernels_impl.h"

namespace s2s {

const ActKernels& act_kernels() {
#if S2S_HAVE_X86_KERNELS
  const Isa isa = active_isa();
  if (isa >= Isa::Avx512 && isa != Isa::Neon) return act_kernels_avx512();
  if (isa == Isa::Avx2) return act_kernels_avx2();
#endif
  return act_kernels_base();
}

}  // namespace s2s
