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

// The pass every variant below changes one thing of.
void base(Backend& b) {
  b.add(t2(out_buf, 2, 3), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
  b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
  b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 12);
}

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
  const std::vector<std::pair<std::string, std::function<void(Backend&)>>> variants = {
      {"another scale", [](Backend& b) {
         b.add(t2(out_buf, 2, 3), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.25f);
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 12);
       }},
      {"another address", [](Backend& b) {
         b.add(t2(out_buf, 2, 3), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
         b.scale(Tensor::contiguous(out_buf.data() + 8, DType::F32, {2, 3}), t2(a_buf, 2, 3),
                 0.5f);
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 12);
       }},
      {"another shape, same size", [](Backend& b) {
         b.add(t2(out_buf, 3, 2), t2(a_buf, 3, 2), t2(b_buf, 3, 2));
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 12);
       }},
      {"another dtype", [](Backend& b) {
         b.add(t2(out_buf, 2, 3, DType::BF16), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 12);
       }},
      {"strided", [](Backend& b) {
         Tensor gaps = t2(a_buf, 2, 3);
         gaps.strides[0] = 4;  // rows 4 apart: a view with gaps
         b.add(t2(out_buf, 2, 3), gaps, t2(b_buf, 2, 3));
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 12);
       }},
      {"another dropout offset", [](Backend& b) {
         b.add(t2(out_buf, 2, 3), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 13);
       }},
      {"another seed value", [](Backend& b) {
         b.add(t2(out_buf, 2, 3), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(8), 12);
       }},
      {"calls swapped", [](Backend& b) {
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
         b.add(t2(out_buf, 2, 3), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
         b.dropout_forward(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.1f, DropoutSeed(7), 12);
       }},
      {"a call fewer", [](Backend& b) {
         b.add(t2(out_buf, 2, 3), t2(a_buf, 2, 3), t2(b_buf, 2, 3));
         b.scale(t2(out_buf, 2, 3), t2(a_buf, 2, 3), 0.5f);
       }},
  };
  for (const auto& [what, calls] : variants) {
    CHECK_MSG(fingerprint(calls) != want, what + ": the fingerprint did not change");
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
