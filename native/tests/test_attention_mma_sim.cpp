// The tensor-core attention kernels (backends/cuda/attention_mma.cuh) run on the CPU in the
// SIMT simulator (simt_simulator.h: fibers per thread, warp-wide mma from the lanes' fragment
// registers by the PTX layout), checked against the CPU attention op: forward out and lse, and
// dq, dk, dv, dbias of the two backward passes, across partial tiles, causal alignment with
// Tq < Tk and Tq > Tk (fully masked rows), padding masks, T5's bias (unscaled), grouped-query
// heads, dropout on the probabilities, every supported head dim, bf16 and f16 operands.
// The reference runs on q, k, v and dout rounded to the operand type first, so what remains is
// the rounding of P and dS inside the kernels: f16 must agree to 1e-3, bf16 to 5e-3 (of the
// largest value of each tensor). Inputs sit between NaN guard zones, so a read outside a
// tensor poisons the results, and a write outside one is caught.
// This proves the kernels' indexing, fragment plumbing, masking and softmax arithmetic; it does
// not prove the CUDA compilation or the hardware (test_cuda_ops runs them on a GPU).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "harness.h"
#include "s2s/dtype.h"
#include "s2s/ops/attention.h"

#if defined(__linux__)
#include "backends/cuda/attention_mma.cuh"
#include "simt_simulator.h"

using namespace s2s;
using s2s::cuda::AttentionGeometry;
using s2s_test::random_vector;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr size_t kGuard = 1024;

// A tensor's values between NaN guard zones.
struct Guarded {
  std::vector<float> buf;
  size_t n = 0;
  explicit Guarded(size_t count, float fill = 0.f) : buf(count + 2 * kGuard, kNaN), n(count) {
    std::fill(data(), data() + n, fill);
  }
  float* data() { return buf.data() + kGuard; }
  bool guards_intact() const {
    for (size_t i = 0; i < kGuard; ++i) {
      if (!std::isnan(buf[i]) || !std::isnan(buf[kGuard + n + i])) return false;
    }
    return true;
  }
};

struct Case {
  const char* name;
  int64_t B, Tq, Tk, Hq, Hkv, D;
  bool causal, mask, bias;
  float scale;      // <= 0: 1/sqrt(D)
  float dropout_p;  // 0: none
  bool bf16;
  bool right_padding = false;  // mask: row b keeps its first Tk - 37 b keys (else random)
};

float round_to(float x, bool bf16) {
  return bf16 ? cuda::bf16_bits_to_f32(cuda::f32_to_bf16_bits(x))
              : cuda::f16_bits_to_f32(cuda::f32_to_f16_bits(x));
}

// max |a - ref| / max |ref| (the tensor's scale), NaN counts as failure.
double scaled_error(const float* a, const float* ref, size_t n) {
  double worst = 0.0, scale = 1e-6;
  for (size_t i = 0; i < n; ++i) scale = std::max(scale, double(std::fabs(ref[i])));
  for (size_t i = 0; i < n; ++i) {
    const double e = std::fabs(double(a[i]) - double(ref[i]));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst / scale;
}

// The kernels' inputs: q, k, v and dout in fp32, or in the operand type (g.q16 ... g.dout16);
// dout_f32 for Di, which attention.cu computes from the fp32 dout either way.
struct Inputs {
  const void *q, *k, *v, *dout;
  const float* dout_f32;
};

template <class E, int D, bool Drop>
void run_kernels_with(simt::Simulator& sim, const AttentionGeometry& g, const Inputs& in,
                      float* out, float* lse, float* di, float* dq, float* dk, float* dv,
                      float* dbias) {
  const void *q = in.q, *k = in.k, *v = in.v, *dout = in.dout;
  using namespace s2s::cuda;
  sim.launch({int((g.Tq + kMmaRows - 1) / kMmaRows), int(g.Hq), int(g.B)}, kMmaThreads,
             size_t(mma_forward_smem_bytes(D)), [&](const simt::SimThread& x, uint8_t* smem) {
               mma_attention_forward<E, D, Drop>(x, g, q, k, v, out, lse,
                                           reinterpret_cast<uint16_t*>(smem));
             });
  // Di = <dout, out> per row (the GPU's attention_di_kernel), in double as there.
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t i = 0; i < g.Tq; ++i)
      for (int64_t h = 0; h < g.Hq; ++h) {
        double acc = 0.0;
        for (int64_t d = 0; d < g.D; ++d) {
          const int64_t at = ((b * g.Tq + i) * g.Hq + h) * g.D + d;
          acc += double(in.dout_f32[at]) * double(out[at]);
        }
        di[(b * g.Hq + h) * g.Tq + i] = float(acc);
      }
  sim.launch({int((g.Tk + kMmaRows - 1) / kMmaRows), int(g.Hkv), int(g.B)}, kMmaThreads,
             size_t(mma_backward_kv_smem_bytes(D)), [&](const simt::SimThread& x, uint8_t* smem) {
               mma_attention_backward_kv<E, D, Drop>(x, g, q, k, v, dout, lse, di, dk, dv,
                                               reinterpret_cast<uint16_t*>(smem));
             });
  auto q_pass = [&](const AttentionGeometry& gq, int grid_z, float* dq_out, float* dbias_out) {
    sim.launch({int((g.Tq + kMmaRows - 1) / kMmaRows), int(g.Hq), grid_z}, kMmaThreads,
               size_t(mma_backward_q_smem_bytes(D)), [&](const simt::SimThread& x, uint8_t* smem) {
                 mma_attention_backward_q<E, D, Drop>(x, gq, q, k, v, dout, lse, di, dq_out,
                                                      dbias_out, reinterpret_cast<uint16_t*>(smem));
               });
  };
  if (dbias == nullptr) {
    q_pass(g, int(g.B), dq, nullptr);
    return;
  }
  // dbias both ways attention_mma.cu may take: the blocks looping over the batch (no dq), and
  // per-batch slices added in batch order afterwards (with dq): the same bits.
  const int64_t slice = g.Hq * g.Tq * g.Tk;
  std::vector<float> serial(dbias, dbias + slice), parts(size_t(g.B * slice), 0.f);
  AttentionGeometry with_parts = g;
  with_parts.dbias_partials = true;
  q_pass(g, 1, nullptr, serial.data());
  q_pass(with_parts, int(g.B), dq, parts.data());
  for (int64_t e = 0; e < slice; ++e) {
    for (int64_t b = 0; b < g.B; ++b) dbias[e] += parts[size_t(b * slice + e)];
  }
  CHECK(std::memcmp(serial.data(), dbias, sizeof(float) * size_t(slice)) == 0);
}

// The kernels instantiated for g.dropout, as attention_mma.cu dispatches them.
template <class E, int D>
void run_kernels(simt::Simulator& sim, const AttentionGeometry& g, const Inputs& in, float* out,
                 float* lse, float* di, float* dq, float* dk, float* dv, float* dbias) {
  if (g.dropout) {
    run_kernels_with<E, D, true>(sim, g, in, out, lse, di, dq, dk, dv, dbias);
  } else {
    run_kernels_with<E, D, false>(sim, g, in, out, lse, di, dq, dk, dv, dbias);
  }
}

template <class E>
void dispatch(int64_t D, simt::Simulator& sim, const AttentionGeometry& g, const Inputs& in,
              float* out, float* lse, float* di, float* dq, float* dk, float* dv, float* dbias) {
  switch (D) {
    case 32: run_kernels<E, 32>(sim, g, in, out, lse, di, dq, dk, dv, dbias); break;
    case 64: run_kernels<E, 64>(sim, g, in, out, lse, di, dq, dk, dv, dbias); break;
    case 96: run_kernels<E, 96>(sim, g, in, out, lse, di, dq, dk, dv, dbias); break;
    default: run_kernels<E, 128>(sim, g, in, out, lse, di, dq, dk, dv, dbias); break;
  }
}

// A tensor's values in 16 bits between NaN guard zones (0xFFFF is NaN in bf16 and f16), 16-byte
// aligned as the cp.async path requires (the kernels stage through registers otherwise).
struct Guarded16 {
  std::vector<uint16_t> buf;
  size_t n = 0;
  Guarded16(const float* values, size_t count, bool bf16) : buf(count + 2 * kGuard, 0xFFFF), n(count) {
    for (size_t i = 0; i < n; ++i) {
      data()[i] = bf16 ? cuda::f32_to_bf16_bits(values[i]) : cuda::f32_to_f16_bits(values[i]);
    }
  }
  uint16_t* data() { return buf.data() + kGuard; }
};

void check_case(const Case& c) {
  const int64_t nq = c.B * c.Tq * c.Hq * c.D, nkv = c.B * c.Tk * c.Hkv * c.D;
  const int64_t nbias = c.bias ? c.Hq * c.Tq * c.Tk : 0, nrows = c.B * c.Hq * c.Tq;
  const uint64_t seed = uint64_t(c.Tq * 131 + c.Tk * 7 + c.D);
  Guarded q(nq), k(nkv), v(nkv), dout(nq), bias(nbias);
  auto fill = [&](Guarded& t, uint64_t s, float lo, float hi) {
    const std::vector<float> r = random_vector(t.n, s, lo, hi);
    for (size_t i = 0; i < t.n; ++i) t.data()[i] = round_to(r[i], c.bf16);
  };
  fill(q, seed + 1, -1.5f, 1.5f);
  fill(k, seed + 2, -1.5f, 1.5f);
  fill(v, seed + 3, -1.f, 1.f);
  fill(dout, seed + 4, -1.f, 1.f);
  if (c.bias) {
    const std::vector<float> r = random_vector(size_t(nbias), seed + 5, -2.f, 2.f);
    std::memcpy(bias.data(), r.data(), r.size() * sizeof(float));
  }
  std::vector<uint8_t> mask;
  if (c.mask) {
    s2s_test::Rng rng(seed + 6);
    mask.resize(size_t(c.B * c.Tk));
    if (c.right_padding) {
      for (int64_t b = 0; b < c.B; ++b) {
        for (int64_t j = 0; j < c.Tk; ++j) mask[size_t(b * c.Tk + j)] = j < c.Tk - 37 * b;
      }
    } else {
      for (auto& m : mask) m = rng.uniform(0.f, 1.f) < 0.75f ? 1 : 0;
      for (int64_t j = 0; j < c.Tk / 3; ++j) mask[size_t(j)] = 0;  // left padding in row 0
      for (int64_t b = 0; b < c.B; ++b) mask[size_t(b * c.Tk + c.Tk - 1)] = 1;
    }
  }
  AttentionOptions opt;
  opt.causal = c.causal;
  if (c.scale > 0) opt.scale = c.scale;
  opt.dropout_p = c.dropout_p;
  opt.dropout_seed = 1234;
  opt.dropout_offset = 99;

  // Reference: the CPU op on the same (rounded) inputs.
  std::vector<float> out_ref(static_cast<size_t>(nq)), lse_ref(static_cast<size_t>(nrows)), dq_ref(size_t(nq), 0.f),
      dk_ref(size_t(nkv), 0.f), dv_ref(size_t(nkv), 0.f), dbias_ref(size_t(nbias), 0.f);
  auto T4 = [](float* p, int64_t a, int64_t b, int64_t cc, int64_t d) {
    return Tensor::contiguous(p, DType::F32, {a, b, cc, d});
  };
  const Tensor tbias = c.bias ? Tensor::contiguous(bias.data(), DType::F32, {c.Hq, c.Tq, c.Tk}) : Tensor{};
  const uint8_t* mp = c.mask ? mask.data() : nullptr;
  const int64_t msize = c.mask ? c.B * c.Tk : 0;
  attention_forward(T4(out_ref.data(), c.B, c.Tq, c.Hq, c.D),
                    Tensor::contiguous(lse_ref.data(), DType::F32, {c.B, c.Hq, c.Tq}),
                    T4(q.data(), c.B, c.Tq, c.Hq, c.D), T4(k.data(), c.B, c.Tk, c.Hkv, c.D),
                    T4(v.data(), c.B, c.Tk, c.Hkv, c.D), tbias, mp, msize, opt);
  attention_backward(T4(dq_ref.data(), c.B, c.Tq, c.Hq, c.D), T4(dk_ref.data(), c.B, c.Tk, c.Hkv, c.D),
                     T4(dv_ref.data(), c.B, c.Tk, c.Hkv, c.D),
                     c.bias ? Tensor::contiguous(dbias_ref.data(), DType::F32, {c.Hq, c.Tq, c.Tk}) : Tensor{},
                     T4(dout.data(), c.B, c.Tq, c.Hq, c.D), T4(q.data(), c.B, c.Tq, c.Hq, c.D),
                     T4(k.data(), c.B, c.Tk, c.Hkv, c.D), T4(v.data(), c.B, c.Tk, c.Hkv, c.D),
                     T4(out_ref.data(), c.B, c.Tq, c.Hq, c.D),
                     Tensor::contiguous(lse_ref.data(), DType::F32, {c.B, c.Hq, c.Tq}), tbias, mp,
                     msize, opt);

  // The kernels, gradients accumulating onto 0.25 (they add, as the op's contract says).
  Guarded out(nq, -7.f), lse(nrows, -7.f), dq(nq, 0.25f), dk(nkv, 0.25f),
      dv(nkv, 0.25f), dbias(nbias, 0.25f);
  AttentionGeometry g{};
  g.B = c.B;
  g.Tq = c.Tq;
  g.Tk = c.Tk;
  g.Hq = c.Hq;
  g.Hkv = c.Hkv;
  g.D = c.D;
  g.G = c.Hq / c.Hkv;
  g.offset = c.Tk - c.Tq;
  g.scale = c.scale > 0 ? c.scale : float(1.0 / std::sqrt(double(c.D)));
  g.causal = c.causal;
  g.bias = c.bias ? bias.data() : nullptr;
  g.mask = mp;
  std::vector<uint8_t> kept_tiles;  // what attention_mma.cu's kept_key_tiles_kernel makes
  if (c.mask) {
    const int64_t tiles = cuda::mma_key_tiles(c.Tk);
    for (int64_t e = 0; e < c.B * tiles; ++e) {
      kept_tiles.push_back(cuda::mma_key_tile_kept(mp, c.Tk, e / tiles, e % tiles));
    }
    g.kept_key_tiles = kept_tiles.data();
  }
  g.dropout = c.dropout_p > 0.f;
  g.dropout_p = c.dropout_p;
  g.dropout_scale = 1.f / (1.f - c.dropout_p);
  g.dropout_seed = opt.dropout_seed.value;
  g.dropout_offset = opt.dropout_offset;
  simt::Simulator sim;
  auto run = [&](const AttentionGeometry& geo, const Inputs& in, Guarded& o, Guarded& l,
                 Guarded& dqs, Guarded& dks, Guarded& dvs, Guarded& dbs) {
    Guarded dis{size_t(nrows)};
    try {
      if (c.bf16) {
        dispatch<cuda::MmaBf16>(c.D, sim, geo, in, o.data(), l.data(), dis.data(), dqs.data(),
                                dks.data(), dvs.data(), c.bias ? dbs.data() : nullptr);
      } else {
        dispatch<cuda::MmaF16>(c.D, sim, geo, in, o.data(), l.data(), dis.data(), dqs.data(),
                               dks.data(), dvs.data(), c.bias ? dbs.data() : nullptr);
      }
    } catch (const std::exception& e) {
      CHECK_MSG(false, std::string(c.name) + ": " + e.what());
      return false;
    }
    return true;
  };
  if (!run(g, {q.data(), k.data(), v.data(), dout.data(), dout.data()}, out, lse, dq, dk, dv,
           dbias)) {
    return;
  }
  CHECK(sim.async_copies == 0);  // fp32 inputs are staged through registers
  // The same inputs in 16 bits (what GPT-2's split and Llama's rope write, and attention.cu's Di
  // pass for dout): staged by cp.async instead of through registers, the same bits everywhere.
  {
    Guarded16 q16(q.data(), q.n, c.bf16), k16(k.data(), k.n, c.bf16), v16(v.data(), v.n, c.bf16),
        dout16(dout.data(), dout.n, c.bf16);
    AttentionGeometry g16 = g;
    g16.q16 = g16.k16 = g16.v16 = g16.dout16 = true;
    Guarded out2(nq, -7.f), lse2(nrows, -7.f), dq2(nq, 0.25f), dk2(nkv, 0.25f), dv2(nkv, 0.25f),
        dbias2(nbias, 0.25f);
    for (Guarded16* t : {&q16, &k16, &v16, &dout16}) {
      CHECK(reinterpret_cast<uintptr_t>(t->data()) % 16 == 0);
    }
    if (run(g16, {q16.data(), k16.data(), v16.data(), dout16.data(), dout.data()}, out2, lse2,
            dq2, dk2, dv2, dbias2)) {
      CHECK(sim.async_copies > 0);
      const std::pair<Guarded*, Guarded*> same[] = {{&out, &out2}, {&lse, &lse2}, {&dq, &dq2},
                                                    {&dk, &dk2}, {&dv, &dv2}, {&dbias, &dbias2}};
      for (const auto& [a, b] : same) {
        CHECK_MSG(std::memcmp(a->data(), b->data(), a->n * sizeof(float)) == 0,
                  std::string(c.name) + ": 16-bit inputs changed the bits");
      }
    }
  }
  // Every tile through the tested copy of the score loops: the same bits as the full tiles'
  // copy gave.
  {
    AttentionGeometry tested = g;
    tested.test_every_tile = true;
    Guarded out3(nq, -7.f), lse3(nrows, -7.f), dq3(nq, 0.25f), dk3(nkv, 0.25f), dv3(nkv, 0.25f),
        dbias3(nbias, 0.25f);
    if (run(tested, {q.data(), k.data(), v.data(), dout.data(), dout.data()}, out3, lse3, dq3,
            dk3, dv3, dbias3)) {
      const std::pair<Guarded*, Guarded*> same[] = {{&out, &out3}, {&lse, &lse3}, {&dq, &dq3},
                                                    {&dk, &dk3}, {&dv, &dv3}, {&dbias, &dbias3}};
      for (const auto& [a, b] : same) {
        CHECK_MSG(std::memcmp(a->data(), b->data(), a->n * sizeof(float)) == 0,
                  std::string(c.name) + ": the full tiles' score loops changed the bits");
      }
    }
  }
  for (int64_t i = 0; i < nq; ++i) dq.data()[i] -= 0.25f;
  for (int64_t i = 0; i < nkv; ++i) dk.data()[i] -= 0.25f, dv.data()[i] -= 0.25f;
  for (int64_t i = 0; i < nbias; ++i) dbias.data()[i] -= 0.25f;

  const double tol = c.bf16 ? 5e-3 : 1e-3;
  struct Pair { const char* what; float* got; const float* ref; int64_t n; };
  const Pair pairs[] = {{"out", out.data(), out_ref.data(), nq},
                        {"dq", dq.data(), dq_ref.data(), nq},
                        {"dk", dk.data(), dk_ref.data(), nkv},
                        {"dv", dv.data(), dv_ref.data(), nkv},
                        {"dbias", dbias.data(), dbias_ref.data(), nbias}};
  for (const Pair& p : pairs) {
    if (p.n == 0) continue;
    const double e = scaled_error(p.got, p.ref, size_t(p.n));
    std::printf("  %-34s %-5s err %.2e (tol %.0e)\n", c.name, p.what, e, tol);
    CHECK_MSG(e <= tol, std::string(c.name) + ": " + p.what + " error " + std::to_string(e));
  }
  // lse: equal where finite (fp32 statistics), -inf exactly where the reference's is.
  double lse_err = 0.0;
  for (int64_t i = 0; i < nrows; ++i) {
    const float a = lse.data()[i], r = lse_ref[size_t(i)];
    if (std::isinf(r)) {
      CHECK_MSG(std::isinf(a) && a < 0, std::string(c.name) + ": lse of a fully masked row");
    } else {
      lse_err = std::max(lse_err, double(std::fabs(a - r)));
    }
  }
  CHECK_MSG(lse_err <= (c.bf16 ? 2e-2 : 4e-3), std::string(c.name) + ": lse error " + std::to_string(lse_err));
  for (Guarded* t : {&out, &lse, &dq, &dk, &dv, &dbias}) {
    CHECK_MSG(t->guards_intact(), std::string(c.name) + ": write outside a tensor");
  }
  CHECK(sim.bad_mask_index < 0);
  CHECK(sim.mma_count > 0);
}

}  // namespace

TEST(mma_attention_causal_gqa_bf16) {
  check_case({"causal GQA T=80 D=64 bf16", 2, 80, 80, 4, 2, 64, true, false, false, 0.f, 0.f, true});
}

TEST(mma_attention_causal_f16) {
  check_case({"causal T=80 D=64 f16", 1, 80, 80, 2, 2, 64, true, false, false, 0.f, 0.f, false});
}

TEST(mma_attention_t5_bias_mask_f16) {
  // Encoder-decoder cross shape: bidirectional, padding mask, additive bias, T5's scale 1.
  check_case({"bias+mask Tq=40 Tk=72 D=32 f16", 2, 40, 72, 2, 2, 32, false, true, true, 1.f, 0.f,
              false});
}

TEST(mma_attention_cache_alignment_dropout_bf16) {
  // Causal with Tq < Tk (a prefix of earlier positions) and dropout on the probabilities.
  check_case({"causal Tq=24 Tk=90 dropout D=64 bf16", 1, 24, 90, 2, 1, 64, true, true, false, 0.f,
              0.2f, true});
}

TEST(mma_attention_fully_masked_rows_f16) {
  // Tq > Tk causal: the first Tq - Tk rows see nothing (zeros, lse -inf, no gradient).
  check_case({"causal Tq=70 Tk=20 D=32 f16", 1, 70, 20, 1, 1, 32, true, false, false, 0.f, 0.f,
              false});
}

TEST(mma_attention_head_dims_96_128) {
  check_case({"bidirectional T=33 D=96 f16", 1, 33, 33, 2, 1, 96, false, false, false, 0.f, 0.f,
              false});
  check_case({"causal T=70 D=128 bf16", 1, 70, 70, 1, 1, 128, true, false, false, 0.f, 0.f, true});
}

TEST(mma_attention_reuses_double_buffers) {
  // Four key tiles and seven query tiles per head: each tile buffer is filled again while the
  // other is read, so a missing barrier or wait before the refill shows (the cases above have
  // two key tiles at most). GQA, padding mask and dropout on; D = 64 and the Q pass's single
  // buffer at D = 128.
  check_case({"causal GQA T=200 mask dropout D=64 f16", 1, 200, 200, 2, 1, 64, true, true, false,
              0.f, 0.1f, false});
  check_case({"bidirectional T=150 D=128 bf16", 1, 150, 150, 1, 1, 128, false, false, false, 0.f,
              0.f, true});
}

TEST(mma_attention_full_tiles_skip_the_mask_tests) {
  // Tiles wholly under the causal diagonal, with all their keys kept and rows and keys present,
  // take the score loops' copy without per-score tests (tile_is_full); the cases above have
  // few or none. The tiles next to them (on the diagonal, past Tq) take the tested copy.
  check_case({"causal GQA T=200 dropout D=64 bf16", 1, 200, 200, 4, 2, 64, true, false, false,
              0.f, 0.1f, true});
  // Tk - Tq = 126 puts a tile's last key one past its first row's view (64 and 32 row tiles).
  check_case({"causal Tq=100 Tk=226 D=64 f16", 1, 100, 226, 2, 1, 64, true, false, false, 0.f,
              0.f, false});
  // Tq and Tk one short of a whole tile: the last tile holds a missing row and a missing key.
  check_case({"bias Tq=127 Tk=191 D=32 bf16", 2, 127, 191, 2, 2, 32, false, false, true, 1.f,
              0.f, true});
  // Right padding (a fine-tuning batch): the tiles the padding leaves whole are full too. Row 2
  // keeps 127 keys: its second key tile lacks only its last.
  check_case({"causal right-padded B=3 T=201 D=64 f16", 3, 201, 201, 2, 1, 64, true, true, false,
              0.f, 0.f, false, true});
}

TEST(mma_attention_shared_memory_fits_every_sm80_gpu) {
  // RTX 30/40 (sm_86/89) allow 99 KB of dynamic shared memory per block, the least of the 8.x
  // and 9.x GPUs the build targets: every kernel at every supported head dim must fit.
  constexpr int64_t kLeast = 99 * 1024;
  for (int64_t D : {32, 64, 96, 128}) {
    CHECK(cuda::mma_head_dim_supported(D));
    CHECK(cuda::mma_forward_smem_bytes(D) <= kLeast);
    CHECK(cuda::mma_backward_kv_smem_bytes(D) <= kLeast);
    CHECK(cuda::mma_backward_q_smem_bytes(D) <= kLeast);
  }
  for (int64_t D : {8, 16, 48, 80, 256}) CHECK(!cuda::mma_head_dim_supported(D));
}

TEST(mma_simulator_catches_wrong_fragments) {
  // The simulator must be able to fail: swapping two A registers (rows g and g+8) changes the
  // product. One warp multiplies a 16x16 A by a 16x8 B with the right and the swapped layout.
  simt::Simulator sim;
  float A[16][16], B[16][8];
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) A[r][c] = float((r * 3 + c) % 7) - 3.f;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c) B[r][c] = float((r + 5 * c) % 5) - 2.f;
  double right_err = 0.0, swapped_err = 0.0;
  for (int swapped = 0; swapped < 2; ++swapped) {
    float D[16][8] = {};
    sim.launch({1, 1, 1}, 32, 0, [&](const simt::SimThread& x, uint8_t*) {
      const int g = x.tid() >> 2, t = x.tid() & 3;
      auto pk = [](float lo, float hi) {
        return uint32_t(cuda::f32_to_bf16_bits(lo)) | (uint32_t(cuda::f32_to_bf16_bits(hi)) << 16);
      };
      uint32_t a[4] = {pk(A[g][2 * t], A[g][2 * t + 1]), pk(A[g + 8][2 * t], A[g + 8][2 * t + 1]),
                       pk(A[g][2 * t + 8], A[g][2 * t + 9]), pk(A[g + 8][2 * t + 8], A[g + 8][2 * t + 9])};
      if (swapped) std::swap(a[0], a[1]);
      uint32_t b[2] = {pk(B[2 * t][g], B[2 * t + 1][g]), pk(B[2 * t + 8][g], B[2 * t + 9][g])};
      float d[4] = {0.f, 0.f, 0.f, 0.f};
      x.mma(d, a, b, true);
      D[g][2 * t] = d[0];
      D[g][2 * t + 1] = d[1];
      D[g + 8][2 * t] = d[2];
      D[g + 8][2 * t + 1] = d[3];
    });
    double err = 0.0;
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 8; ++c) {
        double ref = 0.0;
        for (int kk = 0; kk < 16; ++kk) ref += double(A[r][kk]) * B[kk][c];
        err = std::max(err, std::fabs(ref - D[r][c]));
      }
    (swapped ? swapped_err : right_err) = err;
  }
  CHECK(right_err == 0.0);
  CHECK(swapped_err > 1.0);
}

TEST(ldmatrix_gives_the_mma_fragments) {
  // load_a / load_b / load_b_trans (one ldmatrix.x4 / .x2 / .x2.trans each) against the
  // fragment layout written out register by register (the layout
  // mma_simulator_catches_wrong_fragments checks the product of): a 16x24 tile of distinct
  // values with a padded pitch, at an offset in both dimensions. A misaligned row is an error,
  // as on a GPU.
  constexpr int kPitch = 24 + cuda::kMmaPad;
  simt::Simulator sim;
  int wrong = 0;
  sim.launch({1, 1, 1}, 32, 2 * 16 * kPitch, [&](const simt::SimThread& x, uint8_t* smem) {
    uint16_t* tile = reinterpret_cast<uint16_t*>(smem);
    const int lane = x.tid(), g = lane >> 2, t = lane & 3;
    for (int i = lane; i < 16 * kPitch; i += 32) tile[i] = uint16_t(1000 + i);
    x.sync();
    auto at = [&](int r, int c) {  // two adjacent columns in one register, the lower one low
      return uint32_t(tile[r * kPitch + c]) | (uint32_t(tile[r * kPitch + c + 1]) << 16);
    };
    uint32_t a[4], b[2];
    cuda::mma_detail::load_a(x, a, tile, kPitch, 0, 8);
    const uint32_t want_a[4] = {at(g, 8 + 2 * t), at(g + 8, 8 + 2 * t), at(g, 16 + 2 * t),
                                at(g + 8, 16 + 2 * t)};
    cuda::mma_detail::load_b(x, b, tile, kPitch, 8, 8);  // B stored [n][k]: rows n = 8..15
    const uint32_t want_b[2] = {at(8 + g, 8 + 2 * t), at(8 + g, 16 + 2 * t)};
    // B stored [k][n] (rows k = 0..15, columns n = 16..23): a column's two adjacent rows.
    auto down = [&](int r, int c) {
      return uint32_t(tile[r * kPitch + c]) | (uint32_t(tile[(r + 1) * kPitch + c]) << 16);
    };
    uint32_t bt[2];
    cuda::mma_detail::load_b_trans(x, bt, tile, kPitch, 0, 16);
    const uint32_t want_bt[2] = {down(2 * t, 16 + g), down(8 + 2 * t, 16 + g)};
    for (int i = 0; i < 4; ++i) wrong += a[i] != want_a[i];
    for (int i = 0; i < 2; ++i) wrong += b[i] != want_b[i];
    for (int i = 0; i < 2; ++i) wrong += bt[i] != want_bt[i];
  });
  CHECK(wrong == 0);
  bool threw = false;
  try {
    sim.launch({1, 1, 1}, 32, 2 * 16 * kPitch, [&](const simt::SimThread& x, uint8_t* smem) {
      uint32_t b[2];
      x.ldmatrix(b, 2, reinterpret_cast<uint16_t*>(smem) + 1);  // 2 bytes past an aligned row
    });
  } catch (const std::exception&) {
    threw = true;
  }
  CHECK(threw);
}

TEST(mma_simulator_reports_divergence) {
  simt::Simulator sim;
  bool threw = false;
  try {
    sim.launch({1, 1, 1}, 64, 0, [&](const simt::SimThread& x, uint8_t*) {
      if (x.tid() < 32) x.sync();  // half the block never reaches the barrier
    });
  } catch (const std::exception&) {
    threw = true;
  }
  CHECK(threw);
}

TEST(simulator_schedules_expose_races) {
  // Each thread writes its slot and reads its left neighbour's, with or without the barrier
  // between. The racy kernel passes in order (the neighbour ran first) and fails reversed or
  // shuffled, which is why the simulated suites run under all three; with the barrier every
  // order gives the same result. Blocks: each reads the previous block's output in the same
  // launch, which only the in-order schedule makes look right.
  const simt::Schedule outer = simt::Simulator::schedule();
  simt::Simulator sim;
  auto run = [&](simt::Schedule schedule, bool barrier) {
    simt::Simulator::set_schedule(schedule);
    std::vector<float> out(64, 0.f);
    sim.launch({1, 1, 1}, 64, 64 * sizeof(float), [&](const simt::SimThread& x, uint8_t* smem) {
      float* slot = reinterpret_cast<float*>(smem);
      slot[x.tid()] = float(x.tid());
      if (barrier) x.sync();
      out[size_t(x.tid())] = x.tid() == 0 ? 0.f : slot[x.tid() - 1];
    });
    bool right = true;
    for (int t = 1; t < 64; ++t) right &= out[size_t(t)] == float(t - 1);
    return right;
  };
  auto blocks = [&](simt::Schedule schedule) {
    simt::Simulator::set_schedule(schedule);
    std::vector<float> out(16, -1.f);
    sim.launch({16, 1, 1}, 1, 0, [&](const simt::SimThread& x, uint8_t*) {
      const int b = x.block_x();
      out[size_t(b)] = b == 0 ? 0.f : out[size_t(b) - 1] + 1.f;  // a scan across blocks: a race
    });
    bool right = true;
    for (int b = 0; b < 16; ++b) right &= out[size_t(b)] == float(b);
    return right;
  };
  CHECK(run(simt::Schedule::InOrder, false));
  CHECK(!run(simt::Schedule::Reversed, false));
  CHECK(!run(simt::Schedule::Shuffled, false));
  for (const simt::Schedule s :
       {simt::Schedule::InOrder, simt::Schedule::Reversed, simt::Schedule::Shuffled}) {
    CHECK(run(s, true));
  }
  CHECK(blocks(simt::Schedule::InOrder));
  CHECK(!blocks(simt::Schedule::Reversed));
  CHECK(!blocks(simt::Schedule::Shuffled));
  // Two warps: each reads the other's slot after a barrier, shuffles, then overwrites its own
  // slot with no barrier before (block_sum's "scratch may still be read" hazard). In lockstep
  // every read precedes every overwrite; a warp that runs ahead overwrites first.
  auto ahead = [&](simt::Schedule schedule) {
    simt::Simulator::set_schedule(schedule);
    std::vector<float> out(64, 0.f);
    sim.launch({1, 1, 1}, 64, 2 * sizeof(float), [&](const simt::SimThread& x, uint8_t* smem) {
      float* slot = reinterpret_cast<float*>(smem);
      const int warp = x.tid() / 32;
      if (x.tid() % 32 == 0) slot[warp] = 1.f;
      x.sync();
      const float seen = slot[1 - warp];
      x.shfl_xor(seen, 1);
      if (x.tid() % 32 == 0) slot[warp] = 2.f;
      out[size_t(x.tid())] = seen;
    });
    return std::all_of(out.begin(), out.end(), [](float v) { return v == 1.f; });
  };
  CHECK(ahead(simt::Schedule::InOrder));
  CHECK(!ahead(simt::Schedule::Reversed));
  CHECK(!ahead(simt::Schedule::Shuffled));
  simt::Simulator::set_schedule(outer);
}


TEST(simulator_counts_and_poisons_static_shared_memory) {
  // A kernel's static __shared__ array, as cmake/cuda_sim.cmake declares it: 384 bytes beside
  // the dynamic ones. 48 KB less 384 fits the default limit; 48 KB does not (a GPU refuses
  // that launch), and a kernel that opted in may have 227 KB in all.
  simt::Simulator sim;
  auto launch = [&](size_t dynamic, size_t limit) {
    try {
      sim.launch({2, 1, 1}, 32, dynamic, [&](const simt::SimThread&, uint8_t*) {
        static thread_local double scratch[48];
        sim.declare_static_shared(scratch, sizeof(scratch));
      }, limit);
    } catch (const std::exception& e) {
      CHECK(std::string(e.what()).find("past the launch's limit") != std::string::npos);
      return false;
    }
    return true;
  };
  const size_t kb48 = simt::Simulator::kDefaultSharedBytes;
  CHECK(launch(kb48 - 384, kb48));
  CHECK(!launch(kb48 - 376, kb48));
  CHECK(launch(kb48, simt::Simulator::kMaxSharedBytes));
  CHECK(!launch(simt::Simulator::kMaxSharedBytes - 8, simt::Simulator::kMaxSharedBytes));
  // Each block finds the array poisoned (0xFF bytes: NaN), whatever the block before left
  // there, and every thread finds what the block's first thread wrote after declaring it.
  std::vector<int> poisoned_at_start;
  std::vector<float> seen(64, 0.f);
  sim.launch({2, 1, 1}, 32, 0, [&](const simt::SimThread& x, uint8_t*) {
    static thread_local float slot[1];
    const bool first = x.tid() == 0;
    sim.declare_static_shared(slot, sizeof(slot));
    if (first) {
      poisoned_at_start.push_back(std::isnan(slot[0]) ? 1 : 0);
      slot[0] = float(x.block_x() + 1);
    }
    x.sync();
    seen[size_t(x.block_x() * 32 + x.tid())] = slot[0];
  });
  CHECK(poisoned_at_start == std::vector<int>({1, 1}));
  for (int i = 0; i < 64; ++i) CHECK(seen[size_t(i)] == float(i / 32 + 1));
}
#else
TEST(mma_attention_simulator_skipped) { std::printf("  skipped: the SIMT simulator needs ucontext (Linux)\n"); }
#endif
