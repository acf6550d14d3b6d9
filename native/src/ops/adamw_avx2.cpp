// adamw's element loop compiled with AVX2+FMA (CMake adds the flags for *_avx2.cpp); reached
// only when the CPU has them (s2s::active_isa() >= Avx2). Same source, same bits as portable.
#include "ops/adamw_kernel.h"

namespace s2s {
namespace detail {
void adamw_elements_avx2(float* p, const float* g, float* m, float* v, int64_t n,
                         const AdamWScalars& s) {
  adamw_elements(p, g, m, v, n, s);
}
void adamw_fused_elements_avx2(float* p, float* g, float* m, float* v, uint16_t* c, int64_t n,
                               const AdamWScalars& s, float scale, float clip) {
  adamw_fused_elements(p, g, m, v, c, n, s, scale, clip);
}
}  // namespace detail
}  // namespace s2s
