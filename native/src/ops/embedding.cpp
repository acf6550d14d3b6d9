// embedding forward (row gathers, token-parallel) and backward (scatter-add, parallel over
// channel slices so no two threads touch one element and tokens add in order), plus the
// reference loops. Legend: B batch, T time, C channels, V vocab, P positions.
#include "s2s/ops/embedding.h"

#include <algorithm>

#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "embedding";

struct Dims { int64_t B, T, C; };

void check_table(const Tensor& t, int64_t C, const char* name) {
  if (t.ndim != 2 || t.shape[1] != C) {
    fail(code::kShape, kOp, "expected ", name, " of shape (*, ", C, "), got ", t.shape_string());
  }
  expect_contiguous(t, kOp, name);
}

// ids[i] in [0, V) and, when used, pos[i] in [0, P), else S2S_ARGUMENT naming i.
void check_indices(const int32_t* v, int64_t n, int64_t limit, const char* name) {
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] < 0 || v[i] >= limit) {
      fail(code::kArgument, kOp, "expected ", name, " in [0, ", limit, "), got ", name, "[", i,
           "] = ", v[i]);
    }
  }
}

void check_counts(const Dims& d, const int32_t* ids, int64_t num_ids, const int32_t* pos,
                  int64_t num_pos, bool use_pos) {
  if (ids == nullptr && d.B * d.T > 0) {
    fail(code::kArgument, kOp, "expected ids, got a null pointer");
  }
  if (num_ids != d.B * d.T) {
    fail(code::kShape, kOp, "expected ", d.B * d.T, " ids (B*T = ", d.B, "*", d.T, "), got ",
         num_ids);
  }
  if (use_pos && pos != nullptr && num_pos != 0 && num_pos != d.B * d.T) {
    fail(code::kShape, kOp, "expected ", d.B * d.T, " positions (B*T) or none, got ", num_pos);
  }
}

Dims out_dims(const Tensor& t, const char* name) {
  expect_dtype(t, DType::F32, kOp, name);
  expect_shape(t, {-1, -1, -1}, kOp, name);
  expect_contiguous(t, kOp, name);
  return Dims{t.shape[0], t.shape[1], t.shape[2]};
}

void check_forward(const Tensor& out, const Tensor& wte, const Tensor& wpe, const int32_t* ids,
                   int64_t num_ids, const int32_t* pos, int64_t num_pos, Dims* d) {
  *d = out_dims(out, "out");
  check_table(wte, d->C, "wte");
  const bool use_pos = opu::present(wpe);
  if (use_pos) check_table(wpe, d->C, "wpe");
  check_counts(*d, ids, num_ids, pos, num_pos, use_pos);
  check_indices(ids, num_ids, wte.shape[0], "ids");
  if (use_pos) {
    if (pos != nullptr && num_pos != 0) {
      check_indices(pos, num_pos, wpe.shape[0], "positions");
    } else if (d->T > wpe.shape[0]) {
      fail(code::kArgument, kOp, "expected T <= ", wpe.shape[0],
           " (rows of wpe) for default positions, got T = ", d->T);
    }
  }
}

void check_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                    const int32_t* ids, int64_t num_ids, const int32_t* pos, int64_t num_pos,
                    Dims* d) {
  *d = out_dims(dout, "dout");
  const bool use_pos = opu::present(dwpe);
  check_counts(*d, ids, num_ids, pos, num_pos, use_pos);
  if (opu::present(dwte)) {
    check_table(dwte, d->C, "dwte");
    expect_dtype(dwte, DType::F32, kOp, "dwte");
    check_indices(ids, num_ids, dwte.shape[0], "ids");
  }
  if (use_pos) {
    check_table(dwpe, d->C, "dwpe");
    expect_dtype(dwpe, DType::F32, kOp, "dwpe");
    if (pos != nullptr && num_pos != 0) {
      check_indices(pos, num_pos, dwpe.shape[0], "positions");
    } else if (d->T > dwpe.shape[0]) {
      fail(code::kArgument, kOp, "expected T <= ", dwpe.shape[0],
           " (rows of dwpe) for default positions, got T = ", d->T);
    }
  }
}

// dst[0..C) (= or +=) row `r` of table t, widened to f32.
void load_row(float* dst, const Tensor& t, int64_t r, int64_t C, bool add) {
  if (t.dtype == DType::F32) {
    const float* s = t.f32() + r * C;
    if (add) for (int64_t k = 0; k < C; ++k) dst[k] += s[k];
    else for (int64_t k = 0; k < C; ++k) dst[k] = s[k];
  } else if (t.dtype == DType::BF16) {
    const uint16_t* s = t.u16() + r * C;
    if (add) for (int64_t k = 0; k < C; ++k) dst[k] += bf16_to_f32(s[k]);
    else for (int64_t k = 0; k < C; ++k) dst[k] = bf16_to_f32(s[k]);
  } else {
    const uint16_t* s = t.u16() + r * C;
    if (add) for (int64_t k = 0; k < C; ++k) dst[k] += f16_to_f32(s[k]);
    else for (int64_t k = 0; k < C; ++k) dst[k] = f16_to_f32(s[k]);
  }
}

inline int64_t position_of(const int32_t* pos, int64_t num_pos, int64_t i, int64_t T) {
  return (pos != nullptr && num_pos != 0) ? pos[i] : i % T;
}
}  // namespace

void embedding_forward(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                       const int32_t* ids, int64_t num_ids, const int32_t* pos,
                       int64_t num_pos) {
  Dims d;
  check_forward(out, wte, wpe, ids, num_ids, pos, num_pos, &d);
  const int64_t N = d.B * d.T, C = d.C;
  const bool use_pos = opu::present(wpe);
  float* y = out.f32();
  parallel_for(N, opu::row_grain(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      load_row(y + i * C, wte, ids[i], C, false);
      if (use_pos) load_row(y + i * C, wpe, position_of(pos, num_pos, i, d.T), C, true);
    }
  });
}

void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                        const int32_t* ids, int64_t num_ids, const int32_t* pos,
                        int64_t num_pos) {
  Dims d;
  check_backward(dwte, dwpe, dout, ids, num_ids, pos, num_pos, &d);
  const int64_t N = d.B * d.T, C = d.C;
  float* gte = dwte.f32();
  float* gpe = dwpe.f32();
  if ((!gte && !gpe) || N == 0 || C == 0) return;
  const float* dy = dout.f32();
  // Channel slices of 16 floats (one cache line); each slice is one thread's for all tokens.
  constexpr int64_t kSlice = 16;
  const int64_t slices = (C + kSlice - 1) / kSlice;
  const int64_t grain = std::max<int64_t>(1, opu::kElemGrain / (N * kSlice));
  parallel_for(slices, grain, [&](int64_t sb, int64_t se) {
    const int64_t c0 = sb * kSlice, c1 = std::min(C, se * kSlice);
    for (int64_t i = 0; i < N; ++i) {
      const float* g = dy + i * C;
      if (gte) {
        float* row = gte + int64_t(ids[i]) * C;
        for (int64_t k = c0; k < c1; ++k) row[k] += g[k];
      }
      if (gpe) {
        float* row = gpe + position_of(pos, num_pos, i, d.T) * C;
        for (int64_t k = c0; k < c1; ++k) row[k] += g[k];
      }
    }
  });
}

void embedding_forward_reference(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                                 const int32_t* ids, int64_t num_ids, const int32_t* pos,
                                 int64_t num_pos) {
  Dims d;
  check_forward(out, wte, wpe, ids, num_ids, pos, num_pos, &d);
  auto at = [](const Tensor& t, int64_t idx) -> double {
    if (t.dtype == DType::F32) return t.f32()[idx];
    if (t.dtype == DType::BF16) return bf16_to_f32(t.u16()[idx]);
    return f16_to_f32(t.u16()[idx]);
  };
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t t = 0; t < d.T; ++t) {
      const int64_t i = b * d.T + t;
      const int64_t p = (pos != nullptr && num_pos != 0) ? pos[i] : t;
      for (int64_t c = 0; c < d.C; ++c) {
        double v = at(wte, int64_t(ids[i]) * d.C + c);
        if (opu::present(wpe)) v += at(wpe, p * d.C + c);
        out.f32()[i * d.C + c] = static_cast<float>(v);
      }
    }
  }
}

void embedding_backward_reference(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                  const int32_t* ids, int64_t num_ids, const int32_t* pos,
                                  int64_t num_pos) {
  Dims d;
  check_backward(dwte, dwpe, dout, ids, num_ids, pos, num_pos, &d);
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t t = 0; t < d.T; ++t) {
      const int64_t i = b * d.T + t;
      const int64_t p = (pos != nullptr && num_pos != 0) ? pos[i] : t;
      for (int64_t c = 0; c < d.C; ++c) {
        const float g = dout.f32()[i * d.C + c];
        if (opu::present(dwte)) dwte.f32()[int64_t(ids[i]) * d.C + c] += g;
        if (opu::present(dwpe)) dwpe.f32()[p * d.C + c] += g;
      }
    }
  }
}

}  // namespace s2s
