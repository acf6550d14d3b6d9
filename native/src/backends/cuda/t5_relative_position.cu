// t5_relative_position on CUDA (s2s/ops/t5_relative_position.h semantics). The bucket of each
// relative offset (j - i) + (Tq - 1) comes from the CPU's t5_relative_position_bucket (so both
// backends agree exactly) and is uploaded once per shape (a constant table); the forward is a
// gather, one thread per bias element. The backward is deterministic in two passes: each
// diagonal (h, j - i) summed in double in i order, then each (bucket, h) the sum of its
// diagonals in offset order.
// Legend: Hq heads, Tq/Tk query/key length, NB num_buckets, R = Tq + Tk - 1 offsets.
#include <string>
#include <vector>

#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "t5_relative_position";

struct Dims { int64_t Hq, Tq, Tk, NB, R; };

Dims check(const Tensor& bias, const char* bias_name, const Tensor& table,
           const char* table_name, const T5RelativePositionOptions& o) {
  expect_f32(bias, {-1, -1, -1}, kOp, bias_name);
  Dims d{bias.shape[0], bias.shape[1], bias.shape[2], 0, 0};
  expect_f32(table, {-1, d.Hq}, kOp, table_name);
  d.NB = table.shape[0];
  S2S_REQUIRE(o.q_offset >= 0, code::kArgument, kOp, "expected q_offset >= 0, got ", o.q_offset);
  d.R = d.Tq + d.Tk - 1 > 0 ? d.Tq + d.Tk - 1 : 0;
  t5_relative_position_bucket(0, o.bidirectional, d.NB, o.max_distance);  // validates the config
  return d;
}

// Buckets of the R offsets, on the device: a constant table per shape and configuration,
// uploaded by the first call only, so a training pass that repeats uploads nothing and can be
// recorded (PassReplay). Small integers, exact in float.
const float* bucket_row(Context& ctx, const Dims& d, const T5RelativePositionOptions& o) {
  const std::string key = "t5_buckets " + std::to_string(d.Tq) + " " + std::to_string(d.Tk) +
                          " " + std::to_string(o.q_offset) + " " + std::to_string(d.NB) + " " +
                          std::to_string(o.max_distance) +
                          (o.bidirectional ? " bidirectional" : " causal");
  return ctx.constant_table(key, [&] {
    std::vector<float> host(size_t(d.R));
    for (int64_t r = 0; r < d.R; ++r) {
      host[size_t(r)] = float(t5_relative_position_bucket(r - (d.Tq - 1) - o.q_offset,
                                                          o.bidirectional, d.NB, o.max_distance));
    }
    return host;
  });
}
}  // namespace

void t5_relative_position_forward(Context& ctx, const Tensor& bias, const Tensor& table,
                                  const T5RelativePositionOptions& options) {
  const Dims d = check(bias, "bias", table, "table", options);
  if (d.Hq * d.Tq * d.Tk == 0) return;
  const float* buckets = bucket_row(ctx, d, options);
  float* out = bias.f32();
  const float* tab = table.f32();
  const int64_t Hq = d.Hq, Tq = d.Tq, Tk = d.Tk;
  for_each(ctx, Hq * Tq * Tk, kOp, [=] __device__(int64_t e) {
    const int64_t j = e % Tk, i = (e / Tk) % Tq, h = e / (Tk * Tq);
    out[e] = tab[int64_t(buckets[j - i + Tq - 1]) * Hq + h];
  });
}

// The bucket of every offset j - q a cache of up to K positions can hold, q and j in [0, K):
// index (j - q) + K - 1, K the capacity rounded up to a power of two (so a server decoding to
// many lengths keeps a few tables). The same for the whole generation, so a constant table:
// uploaded by the first decoding step of a capacity, never inside a recorded step.
void t5_relative_position_decoding_forward(Context& ctx, const Tensor& bias, const Tensor& table,
                                           const int32_t* key_end,
                                           const T5RelativePositionOptions& options) {
  const Dims d = check(bias, "bias", table, "table", options);
  S2S_REQUIRE(options.q_offset == 0, code::kArgument, kOp,
              "decoding reads the query offset from key_end: expected q_offset 0, got ",
              options.q_offset);
  S2S_REQUIRE(key_end != nullptr, code::kArgument, kOp, "expected a key_end array");
  if (d.Hq * d.Tq * d.Tk == 0) return;
  const int64_t Hq = d.Hq, Tq = d.Tq, Tk = d.Tk;
  int64_t K = 64;
  while (K < Tk) K *= 2;
  const int64_t offsets = 2 * K - 1;
  std::string key = "t5_decoding_buckets " + std::to_string(K) + " " + std::to_string(d.NB) +
                    " " + std::to_string(options.max_distance) +
                    (options.bidirectional ? " bidirectional" : " causal");
  const float* buckets = ctx.constant_table(key, [&] {
    std::vector<float> host(static_cast<size_t>(offsets));  // small integers: exact in float
    for (int64_t r = 0; r < offsets; ++r) {
      host[size_t(r)] = float(t5_relative_position_bucket(r - (K - 1), options.bidirectional,
                                                          d.NB, options.max_distance));
    }
    return host;
  });
  float* out = bias.f32();
  const float* tab = table.f32();
  unsigned long long* err = ctx.error_slot();
  for_each(ctx, Hq * Tq * Tk, kOp, [=] __device__(int64_t e) {
    const int64_t j = e % Tk, i = (e / Tk) % Tq, h = e / (Tk * Tq);
    const int64_t end = key_end[0];
    if (end < Tq || end > Tk) {
      if (e == 0) report_bad_input(err, KernelReport::T5DecodingKeyEnd, 0, end, Tk);
      out[e] = 0.f;
      return;
    }
    const int64_t q = end - Tq + i;
    out[e] = tab[int64_t(buckets[j - q + K - 1]) * Hq + h];
  });
}

void t5_relative_position_backward(Context& ctx, const Tensor& dtable, const Tensor& dbias,
                                   const T5RelativePositionOptions& options) {
  if (dtable.data == nullptr) return;
  const Dims d = check(dbias, "dbias", dtable, "dtable", options);
  if (d.Hq * d.Tq * d.Tk == 0) return;
  ArenaScope scope(ctx.arena());
  const float* buckets = bucket_row(ctx, d, options);
  double* diag = ctx.arena().allocate_array<double>(size_t(d.Hq * d.R));
  const float* g = dbias.f32();
  float* dt = dtable.f32();
  const int64_t Hq = d.Hq, Tq = d.Tq, Tk = d.Tk, R = d.R, NB = d.NB;
  // diag[h, r] = sum over i of dbias[h, i, i + r - (Tq - 1)] (the keys that exist), in i order.
  for_each(ctx, Hq * R, kOp, [=] __device__(int64_t e) {
    const int64_t r = e % R, h = e / R, delta = r - (Tq - 1);  // j = i + delta
    const int64_t i_first = delta < 0 ? -delta : 0;
    const int64_t i_end = Tk - delta < Tq ? Tk - delta : Tq;
    double s = 0.0;
    for (int64_t i = i_first; i < i_end; ++i) s += double(g[(h * Tq + i) * Tk + i + delta]);
    diag[e] = s;
  });
  // dtable[bucket, h] += sum of the diagonals in that bucket, in offset order.
  for_each(ctx, NB * Hq, kOp, [=] __device__(int64_t e) {
    const int64_t h = e % Hq, bucket = e / Hq;
    double s = 0.0;
    bool any = false;
    for (int64_t r = 0; r < R; ++r) {
      if (int64_t(buckets[r]) == bucket) {
        s += diag[h * R + r];
        any = true;
      }
    }
    if (any) dt[e] = static_cast<float>(double(dt[e]) + s);
  });
}

}  // namespace cuda
}  // namespace s2s
