// kv_cache_append on CUDA (s2s/ops/kv_cache_append.h semantics): one launch writes every row's
// new keys and values, a thread per float of k and of v, where the KVCache used to issue two
// copies per row and layer. slot and key_end are device arrays, the same ones attention_cached
// reads, so the launch's arguments are the same at every decoding step. A slot or key_end the
// CPU op would reject is reported through the context's error slot (raised at the next
// synchronize) and that row writes nothing. A 16-bit cache gets each value rounded to nearest
// even (half_bits.h: the CPU op's bits).
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "s2s/ops/kv_cache_append.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "kv_cache_append";
}

void kv_cache_append(Context& ctx, const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                     const Tensor& v, const int32_t* slot, const int32_t* key_end) {
  const KvCacheAppendShape shape = kv_cache_append_shape(k_cache, v_cache, k, v, slot, key_end);
  const int64_t R = shape.R, T = shape.T, S = shape.S, Tc = shape.Tc;
  const int64_t HD = shape.H * shape.D;
  const int64_t k_row = k.strides[0], k_pos = k.strides[1];
  const int64_t v_row = v.strides[0], v_pos = v.strides[1];
  const float* kd = k.f32();
  const float* vd = v.f32();
  void* kc = k_cache.data;
  void* vc = v_cache.data;
  const DType dtype = k_cache.dtype;  // v_cache's too (checked)
  unsigned long long* err = ctx.error_slot();
  for_each(ctx, R * T * HD, kOp, [=] __device__(int64_t i) {
    const int64_t c = i % HD, t = (i / HD) % T, r = i / (HD * T);
    const int64_t s = slot[r], end = key_end[r];
    if (s < 0 || s >= S || end < T || end > Tc) {
      if (c == 0 && t == 0) {
        if (s < 0 || s >= S) report_bad_input(err, KernelReport::KvCacheSlot, r, s, S);
        else report_bad_input(err, KernelReport::KvCacheEnd, r, end, Tc);
      }
      return;
    }
    const int64_t dst = (s * Tc + end - T + t) * HD + c;
    const float kx = kd[r * k_row + t * k_pos + c], vx = vd[r * v_row + t * v_pos + c];
    if (dtype == DType::F32) {
      static_cast<float*>(kc)[dst] = kx;
      static_cast<float*>(vc)[dst] = vx;
    } else if (dtype == DType::BF16) {
      static_cast<uint16_t*>(kc)[dst] = f32_to_bf16_bits(kx);
      static_cast<uint16_t*>(vc)[dst] = f32_to_bf16_bits(vx);
    } else {
      static_cast<uint16_t*>(kc)[dst] = f32_to_f16_bits(kx);
      static_cast<uint16_t*>(vc)[dst] = f32_to_f16_bits(vx);
    }
  });
}

}  // namespace cuda
}  // namespace s2s
