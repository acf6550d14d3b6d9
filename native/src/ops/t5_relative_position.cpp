// t5_relative_position: T5's relative-position bucket function, the bias gather (forward) and
// its scatter-add (backward), then per-element reference loops.
// Legend: Hq heads, Tq/Tk query/key length, NB num_buckets, R = Tq + Tk - 1 relative positions.
#include "s2s/ops/t5_relative_position.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "s2s/thread_pool.h"

namespace s2s {

namespace {

constexpr const char* kOp = "t5_relative_position";

void check_config(bool bidirectional, int64_t num_buckets, int64_t max_distance) {
  S2S_REQUIRE(num_buckets >= (bidirectional ? 4 : 2), code::kArgument, kOp,
              "expected num_buckets >= ", bidirectional ? 4 : 2, ", got ", num_buckets);
  const int64_t max_exact = (bidirectional ? num_buckets / 2 : num_buckets) / 2;
  S2S_REQUIRE(max_distance > max_exact, code::kArgument, kOp, "expected max_distance > ",
              max_exact, " (the exact-bucket range), got ", max_distance);
}

int32_t bucket_unchecked(int64_t rel, bool bidirectional, int64_t num_buckets,
                         int64_t max_distance) {
  int64_t buckets = 0, n;
  if (bidirectional) {
    num_buckets /= 2;
    if (rel > 0) buckets += num_buckets;
    n = rel < 0 ? -rel : rel;
  } else {
    n = rel < 0 ? -rel : 0;  // -min(rel, 0)
  }
  const int64_t max_exact = num_buckets / 2;
  if (n < max_exact) return static_cast<int32_t>(buckets + n);
  // torch: log(n.float() / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact),
  // all in fp32 (the Python scalars become fp32 operands), then .to(long) truncates.
  const float ratio = static_cast<float>(n) / static_cast<float>(max_exact);
  const float log_range =
      static_cast<float>(std::log(double(max_distance) / double(max_exact)));
  const float v = std::log(ratio) / log_range * static_cast<float>(num_buckets - max_exact);
  int64_t large = max_exact + static_cast<int64_t>(v);
  large = std::min<int64_t>(large, num_buckets - 1);
  return static_cast<int32_t>(buckets + large);
}

struct Dims { int64_t Hq, Tq, Tk, NB; };

Dims check(const Tensor& bias, const char* bias_name, const Tensor& table, const char* table_name,
           const T5RelativePositionOptions& o) {
  expect_f32(bias, {-1, -1, -1}, kOp, bias_name);
  Dims d{bias.shape[0], bias.shape[1], bias.shape[2], 0};
  expect_f32(table, {-1, d.Hq}, kOp, table_name);
  d.NB = table.shape[0];
  check_config(o.bidirectional, d.NB, o.max_distance);
  S2S_REQUIRE(o.q_offset >= 0, code::kArgument, kOp, "expected q_offset >= 0, got ", o.q_offset);
  return d;
}

// bucket of every relative position j - (q_offset + i): index (j - i) + (Tq - 1), length R.
std::vector<int32_t> bucket_row(const Dims& d, const T5RelativePositionOptions& o) {
  std::vector<int32_t> b(d.Tq + d.Tk - 1 > 0 ? d.Tq + d.Tk - 1 : 0);
  for (size_t r = 0; r < b.size(); ++r) {
    const int64_t rel = int64_t(r) - (d.Tq - 1) - o.q_offset;
    b[r] = bucket_unchecked(rel, o.bidirectional, d.NB, o.max_distance);
  }
  return b;
}

}  // namespace

int32_t t5_relative_position_bucket(int64_t relative_position, bool bidirectional,
                                    int64_t num_buckets, int64_t max_distance) {
  check_config(bidirectional, num_buckets, max_distance);
  return bucket_unchecked(relative_position, bidirectional, num_buckets, max_distance);
}

// ---------------------------------------------------------------------------------------------
// forward: a gather; each bias row (h, i) is the slice [Tq-1-i, Tq-1-i+Tk) of the bucket row.
void t5_relative_position_forward(const Tensor& bias, const Tensor& table,
                                  const T5RelativePositionOptions& options) {
  const Dims d = check(bias, "bias", table, "table", options);
  const std::vector<int32_t> buckets = bucket_row(d, options);
  const float* tab = table.f32();
  float* out = bias.f32();
  parallel_for(d.Hq * d.Tq, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, d.Tk)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t row = r0; row < r1; ++row) {  // row = h*Tq + i
                   const int64_t h = row / d.Tq, i = row % d.Tq;
                   const int32_t* bk = buckets.data() + (d.Tq - 1 - i);
                   float* o = out + row * d.Tk;
                   for (int64_t j = 0; j < d.Tk; ++j) o[j] = tab[bk[j] * d.Hq + h];
                 }
               });
}

void t5_relative_position_decoding_forward(const Tensor& bias, const Tensor& table,
                                           const int32_t* key_end,
                                           const T5RelativePositionOptions& options) {
  expect_f32(bias, {-1, -1, -1}, kOp, "bias");
  const int64_t Tq = bias.shape[1], Tk = bias.shape[2];
  S2S_REQUIRE(options.q_offset == 0, code::kArgument, kOp,
              "decoding reads the query offset from key_end: expected q_offset 0, got ",
              options.q_offset);
  S2S_REQUIRE(key_end != nullptr && key_end[0] >= Tq && key_end[0] <= Tk, code::kArgument, kOp,
              "expected key_end[0] in [", Tq, ", ", Tk, "] (the new queries before it, within ",
              "the cache), got ", key_end != nullptr ? key_end[0] : -1);
  T5RelativePositionOptions o = options;
  o.q_offset = key_end[0] - Tq;
  t5_relative_position_forward(bias, table, o);
}

// backward: per head, sum dbias into NB double accumulators in (i, j) order, then add once.
void t5_relative_position_backward(const Tensor& dtable, const Tensor& dbias,
                                   const T5RelativePositionOptions& options) {
  if (dtable.data == nullptr) return;
  const Dims d = check(dbias, "dbias", dtable, "dtable", options);
  const std::vector<int32_t> buckets = bucket_row(d, options);
  const float* g = dbias.f32();
  float* dt = dtable.f32();
  parallel_for(d.Hq, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, d.Tq * d.Tk)),
               [&](int64_t h0, int64_t h1) {
                 std::vector<double> acc(d.NB);
                 for (int64_t h = h0; h < h1; ++h) {
                   std::fill(acc.begin(), acc.end(), 0.0);
                   for (int64_t i = 0; i < d.Tq; ++i) {
                     const int32_t* bk = buckets.data() + (d.Tq - 1 - i);
                     const float* gr = g + (h * d.Tq + i) * d.Tk;
                     for (int64_t j = 0; j < d.Tk; ++j) acc[bk[j]] += gr[j];
                   }
                   for (int64_t b = 0; b < d.NB; ++b) {
                     dt[b * d.Hq + h] = static_cast<float>(double(dt[b * d.Hq + h]) + acc[b]);
                   }
                 }
               });
}

// ---------------------------------------------------------------------------------------------
// reference: the bucket function per element.
void t5_relative_position_forward_reference(const Tensor& bias, const Tensor& table,
                                            const T5RelativePositionOptions& options) {
  const Dims d = check(bias, "bias", table, "table", options);
  for (int64_t h = 0; h < d.Hq; ++h)
    for (int64_t i = 0; i < d.Tq; ++i)
      for (int64_t j = 0; j < d.Tk; ++j) {
        const int32_t b = t5_relative_position_bucket(j - (options.q_offset + i),
                                                      options.bidirectional, d.NB,
                                                      options.max_distance);
        bias.f32()[(h * d.Tq + i) * d.Tk + j] = table.f32()[b * d.Hq + h];
      }
}

void t5_relative_position_backward_reference(const Tensor& dtable, const Tensor& dbias,
                                             const T5RelativePositionOptions& options) {
  if (dtable.data == nullptr) return;
  const Dims d = check(dbias, "dbias", dtable, "dtable", options);
  std::vector<double> acc(d.NB * d.Hq, 0.0);
  for (int64_t h = 0; h < d.Hq; ++h)
    for (int64_t i = 0; i < d.Tq; ++i)
      for (int64_t j = 0; j < d.Tk; ++j) {
        const int32_t b = t5_relative_position_bucket(j - (options.q_offset + i),
                                                      options.bidirectional, d.NB,
                                                      options.max_distance);
        acc[b * d.Hq + h] += dbias.f32()[(h * d.Tq + i) * d.Tk + j];
      }
  for (int64_t n = 0; n < d.NB * d.Hq; ++n)
    dtable.f32()[n] = static_cast<float>(double(dtable.f32()[n]) + acc[n]);
}

}  // namespace s2s
