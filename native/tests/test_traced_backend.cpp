// TracedBackend (nn/traced_backend.h), the fingerprint PassReplay trusts: a recording is replayed
// for a pass whose fingerprint is the recorded one, so two call sequences must share one only when
// they queue the same work. The same calls give the same fingerprint; changing anything the work
// depends on changes it (the op, the order, a tensor's address, dtype, shape or strides, a
// scalar's bits, a seed's value, a seed's address); the inputs do not (uploads, the value behind
// DropoutSeed::on_device). A dry tracer drops the work and keeps the memory calls.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"
#include "nn/traced_backend.h"

using namespace s2s;

namespace {

std::vector<float> a_buf(64, 1.0f), b_buf(64, 2.0f), out_buf(64, 0.0f);

Tensor t2(std::vector<float>& v, int64_t r, int64_t c, DType dtype = DType::F32) {
  return Tensor::contiguous(v.data(), dtype, {r, c});
}

// The fingerprint of `calls` made on a dry tracer over the CPU backend (nothing runs, so the
// tensors need not suit the ops).
uint64_t fingerprint(const std::function<void(Backend&)>& calls) {
  TracedBackend traced(cpu_backend(), /*dry=*/true);
  calls(traced);
  return traced.fingerprint();
}

// The pass every variant below changes one thing of: an add, a scale and a dropout.
struct Pass {
  int64_t rows = 2, cols = 3;
  DType add_out = DType::F32;
  int64_t a_row_stride = 3;  // 4: a view with gaps
  int64_t scale_out_at = 0;  // elements into out_buf
  float scale = 0.5f;
  uint64_t seed = 7, offset = 12;
  bool swapped = false, dropout = true;

  void operator()(Backend& b) const {
    Tensor a = t2(a_buf, rows, cols);
    a.strides[0] = a_row_stride;
    auto add = [&] { b.add(t2(out_buf, rows, cols, add_out), a, t2(b_buf, rows, cols)); };
    auto scaled = [&] {
      b.scale(Tensor::contiguous(out_buf.data() + scale_out_at, DType::F32, {2, 3}),
              t2(a_buf, 2, 3), scale);
    };
    if (swapped) {
      scaled();
      add();
    } else {
      add();
      scaled();
    }
    if (dropout) {
      b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(seed), offset);
    }
  }
};

template <typename Change>
Pass changed(Change change) {
  Pass p;
  change(p);
  return p;
}

void base(Backend& b) { Pass{}(b); }

}  // namespace

TEST(traced_fingerprint_is_the_same_for_the_same_calls) {
  CHECK(fingerprint(base) == fingerprint(base));
  TracedBackend traced(cpu_backend(), true);
  base(traced);
  CHECK(traced.calls() == 3);
  // Uploads are the pass's inputs, not its work.
  std::vector<float> host(6, 3.0f);
  CHECK(fingerprint(base) == fingerprint([&](Backend& b) {
          b.upload(a_buf.data(), host.data(), sizeof(float) * 6);
          base(b);
          b.upload(b_buf.data(), host.data(), sizeof(float) * 6);
        }));
}

TEST(traced_fingerprint_changes_with_anything_the_work_depends_on) {
  const uint64_t want = fingerprint(base);
  const std::vector<std::pair<std::string, Pass>> variants = {
      {"another scale", changed([](Pass& p) { p.scale = 0.25f; })},
      {"another address", changed([](Pass& p) { p.scale_out_at = 8; })},
      {"another shape, same size", changed([](Pass& p) {
         p.rows = 3;
         p.cols = 2;
         p.a_row_stride = 2;
       })},
      {"another dtype", changed([](Pass& p) { p.add_out = DType::BF16; })},
      {"strided", changed([](Pass& p) { p.a_row_stride = 4; })},
      {"another dropout offset", changed([](Pass& p) { p.offset = 13; })},
      {"another seed value", changed([](Pass& p) { p.seed = 8; })},
      {"calls swapped", changed([](Pass& p) { p.swapped = true; })},
      {"a call fewer", changed([](Pass& p) { p.dropout = false; })},
  };
  for (const auto& [what, pass] : variants) {
    CHECK_MSG(fingerprint(pass) != want, what + ": the fingerprint did not change");
  }
  // -0.0f and 0.0f are other bits (a kernel may give other results); so are two ops that take
  // the same arguments.
  auto scaled = [](float s) {
    return [s](Backend& b) { b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), s); };
  };
  CHECK(fingerprint(scaled(0.0f)) != fingerprint(scaled(-0.0f)));
  CHECK(fingerprint([](Backend& b) { b.relu_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3)); }) !=
        fingerprint([](Backend& b) { b.silu_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3)); }));
  // A size-1 dim's stride is kept too (Tensor::is_contiguous overlooks it; a GEMM's leading
  // dimension may be it).
  auto row = [](int64_t stride) {
    return [stride](Backend& b) {
      Tensor r = t2(a_buf, 1, 6);
      r.strides[0] = stride;
      b.relu_forward(t2(out_buf, 1, 6), r);
    };
  };
  CHECK(fingerprint(row(6)) != fingerprint(row(8)));
}

TEST(traced_fingerprint_takes_a_device_seed_by_address) {
  uint64_t slot = 7, other_slot = 7;
  auto dropped = [](const uint64_t* at, uint64_t value) {
    return [at, value](Backend& b) {
      DropoutSeed s(value);
      s.on_device = at;
      b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, s, 0);
    };
  };
  const uint64_t want = fingerprint(dropped(&slot, 7));
  slot = 99;  // another step's seed written there: the same work
  CHECK(fingerprint(dropped(&slot, 99)) == want);
  CHECK(fingerprint(dropped(&other_slot, 7)) != want);  // read from elsewhere: other work
  CHECK(fingerprint(dropped(nullptr, 7)) != want);      // the value as an argument
}

TEST(traced_dry_run_drops_the_work_and_keeps_the_memory_calls) {
  std::vector<float> x(6, 1.5f), y(6, 0.0f);
  {
    TracedBackend dry(cpu_backend(), true);
    dry.scale(t2(y, 2, 3), t2(x, 2, 3), 2.0f);
    std::vector<float> host(6, 4.0f);
    dry.upload(y.data(), host.data(), sizeof(float) * 6);  // inputs are staged
  }
  CHECK(y[0] == 4.0f && y[5] == 4.0f);
  TracedBackend wet(cpu_backend(), false);
  wet.scale(t2(y, 2, 3), t2(x, 2, 3), 2.0f);
  CHECK(y[0] == 3.0f && y[5] == 3.0f);
}
