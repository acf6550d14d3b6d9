// cast: f32 <-> bf16 / f16 conversions. The fast loops are branch-free rewrites of dtype.h's
// scalar conversions (selects instead of branches, so they vectorise) and must match them bit
// for bit; the reference loops call the scalar functions directly.
#include "s2s/ops/cast.h"

#include "ops/op_util.h"
#include "s2s/dtype.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "cast";
constexpr int64_t kGrain = 1 << 16;

inline uint32_t fbits(float f) { uint32_t u; __builtin_memcpy(&u, &f, 4); return u; }
inline float ffrom(uint32_t u) { float f; __builtin_memcpy(&f, &u, 4); return f; }

using opu::bf16_rne;  // f32_to_bf16 as selects

// Same as f32_to_f16, computed on every path and selected (after F. Giesen's
// float_to_half_fast3_rtne). Subnormal results come from an fp add with an aligning magic
// number, which rounds to nearest even in hardware.
inline uint16_t f16_rne(float f) {
  const uint32_t u = fbits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  // Inf / NaN / overflow.
  const uint32_t big = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
  // Subnormal or zero: 2^-14 * m / 1024 aligned at the bottom bits of (a + 0.5).
  const uint32_t denorm_magic = ((127 - 15) + (23 - 10) + 1) << 23;
  const uint32_t sub = fbits(ffrom(a) + ffrom(denorm_magic)) - denorm_magic;
  // Normal: rebias and round the 13 dropped bits to even (a carry may reach Inf, correctly).
  const uint32_t norm = (a + ((15u - 127u) << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  const uint32_t h = a >= 0x47800000u ? big : (a < 0x38800000u ? sub : norm);
  return static_cast<uint16_t>(sign | h);
}

// Same as f16_to_f32 (after F. Giesen's half_to_float_fast5).
inline float f16_widen(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  const uint32_t inf_nan = o + ((128u - 16u) << 23);
  const uint32_t sub = fbits(ffrom(o + (1u << 23)) - ffrom(113u << 23));
  o = exp == shifted_exp ? inf_nan : (exp == 0 ? sub : o);
  return ffrom(o | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
}

void check(const Tensor& out, const Tensor& inp, const char* out_name, const char* inp_name) {
  expect_contiguous(inp, kOp, inp_name);
  bool same = out.ndim == inp.ndim;
  for (int i = 0; same && i < out.ndim; ++i) same = out.shape[i] == inp.shape[i];
  if (!same) {
    fail(code::kShape, kOp, "expected ", out_name, " of shape ", inp.shape_string(), " (as ",
         inp_name, "), got ", out.shape_string());
  }
  expect_contiguous(out, kOp, out_name);
}

// Converts n elements of any dtype to f32 into dst (accumulating when add).
void widen(float* dst, const Tensor& src, int64_t b, int64_t e, bool add) {
  if (src.dtype == DType::F32) {
    const float* s = src.f32();
    if (add) for (int64_t i = b; i < e; ++i) dst[i] += s[i];
    else for (int64_t i = b; i < e; ++i) dst[i] = s[i];
  } else if (src.dtype == DType::BF16) {
    const uint16_t* s = src.u16();
    if (add) for (int64_t i = b; i < e; ++i) dst[i] += ffrom(uint32_t(s[i]) << 16);
    else for (int64_t i = b; i < e; ++i) dst[i] = ffrom(uint32_t(s[i]) << 16);
  } else {
    const uint16_t* s = src.u16();
    if (add) for (int64_t i = b; i < e; ++i) dst[i] += f16_widen(s[i]);
    else for (int64_t i = b; i < e; ++i) dst[i] = f16_widen(s[i]);
  }
}
}  // namespace

void cast_f32_to_bf16(uint16_t* dst, const float* src, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = bf16_rne(src[i]);
  });
}

void cast_bf16_to_f32(float* dst, const uint16_t* src, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = ffrom(uint32_t(src[i]) << 16);
  });
}

void cast_f32_to_f16(uint16_t* dst, const float* src, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = f16_rne(src[i]);
  });
}

void cast_f16_to_f32(float* dst, const uint16_t* src, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = f16_widen(src[i]);
  });
}

void cast_forward(const Tensor& out, const Tensor& inp) {
  check(out, inp, "out", "inp");
  const int64_t n = inp.numel();
  if (out.dtype == DType::F32) {
    parallel_for(n, kGrain, [&](int64_t b, int64_t e) { widen(out.f32(), inp, b, e, false); });
  } else if (inp.dtype == DType::F32) {
    if (out.dtype == DType::BF16) cast_f32_to_bf16(out.u16(), inp.f32(), n);
    else cast_f32_to_f16(out.u16(), inp.f32(), n);
  } else if (inp.dtype == out.dtype) {
    parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out.u16()[i] = inp.u16()[i];
    });
  } else {
    // bf16 <-> f16 through f32: widening is exact, so there is one rounding.
    const bool to_bf16 = out.dtype == DType::BF16;
    parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      const uint16_t* s = inp.u16();
      uint16_t* d = out.u16();
      if (to_bf16) for (int64_t i = b; i < e; ++i) d[i] = bf16_rne(f16_widen(s[i]));
      else for (int64_t i = b; i < e; ++i) d[i] = f16_rne(ffrom(uint32_t(s[i]) << 16));
    });
  }
}

void cast_backward(const Tensor& dinp, const Tensor& dout) {
  if (!opu::present(dinp)) return;
  expect_dtype(dinp, DType::F32, kOp, "dinp");
  check(dinp, dout, "dinp", "dout");
  parallel_for(dout.numel(), kGrain,
               [&](int64_t b, int64_t e) { widen(dinp.f32(), dout, b, e, true); });
}

namespace {
float to_f32_scalar(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: return t.f32()[i];
    case DType::BF16: return bf16_to_f32(t.u16()[i]);
    case DType::F16: return f16_to_f32(t.u16()[i]);
  }
  return 0;
}
}  // namespace

void cast_forward_reference(const Tensor& out, const Tensor& inp) {
  check(out, inp, "out", "inp");
  for (int64_t i = 0; i < inp.numel(); ++i) {
    const float v = to_f32_scalar(inp, i);
    switch (out.dtype) {
      case DType::F32: out.f32()[i] = v; break;
      case DType::BF16: out.u16()[i] = f32_to_bf16(v); break;
      case DType::F16: out.u16()[i] = f32_to_f16(v); break;
    }
  }
}

void cast_backward_reference(const Tensor& dinp, const Tensor& dout) {
  if (!opu::present(dinp)) return;
  expect_dtype(dinp, DType::F32, kOp, "dinp");
  check(dinp, dout, "dinp", "dout");
  for (int64_t i = 0; i < dout.numel(); ++i) dinp.f32()[i] += to_f32_scalar(dout, i);
}

}  // namespace s2s
