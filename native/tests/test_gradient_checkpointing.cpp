// Gradient checkpointing (Graph::checkpoint, Model::set_gradient_checkpointing): a checkpointed
// run must give the plain run's loss and every gradient bit for bit, because backward reruns each
// block with the same inputs and dropout counters. Checked on one fixture of each family (gpt2,
// llama-gqa, t5-relu-tied: tied embeddings and the shared T5 position bias) with every dropout
// site on, full fine-tuning and LoRA (with LoRA dropout), over two accumulated micro-batches, in
// fp32, bf16 and fp16 compute; the same on the checked device backend (checked_backend.h) against the
// plain CPU run, so the segment memory of a device backend is wired right. Also: the memory a
// pass keeps actually drops, and the segment contract (what a segment may return) is enforced.
// And the inference form (Graph::transient): a no-grad pass keeps one block's activations.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "checked_backend.h"
#include "fixture_model.h"
#include "harness.h"
#include "training_runs.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/nn/functional.h"
#include "s2s/thread_pool.h"

using namespace s2s;
using s2s_test::fixture_dir;

namespace {

using namespace s2s_test::training;

std::vector<uint8_t> bytes_of(Backend& backend, const Tensor& t) {
  std::vector<uint8_t> out(tensor_bytes(t));
  if (!out.empty()) backend.download(out.data(), t.data, out.size());
  return out;
}

// Every loss and every trainable gradient of `got` equals `want`'s bit for bit; returns how many
// gradients differ (0 when they all match) for the callers that expect a difference.
int differing(Run& got, Run& want, const std::string& what, bool report) {
  int bad = 0;
  if (got.losses.size() != want.losses.size() ||
      std::memcmp(got.losses.data(), want.losses.data(), sizeof(float) * got.losses.size()) != 0) {
    ++bad;
    if (report) CHECK_MSG(false, what + ": losses differ");
  }
  std::vector<Param*> gp = got.model->params().all(), wp = want.model->params().all();
  CHECK_MSG(gp.size() == wp.size(), what + ": param lists differ");
  int compared = 0;
  for (size_t i = 0; i < gp.size() && i < wp.size(); ++i) {
    if (!wp[i]->trainable) continue;
    ++compared;
    if (bytes_of(got.model->backend(), gp[i]->grad) != bytes_of(want.model->backend(), wp[i]->grad)) {
      ++bad;
      if (report) CHECK_MSG(false, what + ": gradient of " + wp[i]->name + " differs");
    }
  }
  CHECK_MSG(compared > 0, what + ": nothing trainable");
  return bad;
}

// The plain CPU run against a checkpointed run (on `backend`, or the CPU): two accumulated
// micro-batches (other dropout masks in the second), then every gradient.
void check_bit_identical(Method method, ComputeDType compute,
                         const std::function<std::shared_ptr<Backend>()>& backend) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    Setup plain_setup;
    plain_setup.method = method;
    plain_setup.compute = compute;
    Setup ckpt_setup = plain_setup;
    ckpt_setup.checkpointing = true;
    if (backend) ckpt_setup.backend = backend();
    auto plain = build(f, plain_setup);
    auto ckpt = build(f, ckpt_setup);
    const std::string what = f.name + (method == Method::Lora ? " LoRA" : " full") + " " +
                             compute_dtype_name(compute) +
                             (backend ? " on the checked backend" : "");
    micro_batch(*plain, fx.batch, 7);
    micro_batch(*ckpt, fx.batch, 7);
    micro_batch(*plain, fx.batch, 8);
    micro_batch(*ckpt, fx.batch, 8);
    CHECK_MSG(differing(*ckpt, *plain, what, true) == 0, what + ": not bit-identical");
    std::printf("    %s: losses %.6f, %.6f bit-identical with checkpointing\n", what.c_str(),
                plain->losses[0], plain->losses[1]);

    // The comparison can fail: the same checkpointed run with other dropout masks differs.
    auto other = build(f, ckpt_setup.backend ? Setup{method, compute, true, backend()} : ckpt_setup);
    micro_batch(*other, fx.batch, 9);
    micro_batch(*other, fx.batch, 8);
    CHECK_MSG(differing(*other, *plain, what, false) > 0,
              what + ": other dropout masks gave the same gradients (is dropout live?)");
  }
}

std::shared_ptr<Backend> checked() { return std::make_shared<s2s_test::CheckedHostBackend>(); }

}  // namespace

// ---- bit-identical gradients ---------------------------------------------------------------------

TEST(checkpointing_full_training_fp32_is_bit_identical) {
  check_bit_identical(Method::Full, ComputeDType::F32, nullptr);
}

TEST(checkpointing_lora_fp32_is_bit_identical) {
  check_bit_identical(Method::Lora, ComputeDType::F32, nullptr);
}

TEST(checkpointing_full_training_bf16_is_bit_identical) {
  check_bit_identical(Method::Full, ComputeDType::BF16, nullptr);
}

TEST(checkpointing_lora_bf16_is_bit_identical) {
  check_bit_identical(Method::Lora, ComputeDType::BF16, nullptr);
}

TEST(checkpointing_f16_is_bit_identical) {
  check_bit_identical(Method::Full, ComputeDType::F16, nullptr);
  check_bit_identical(Method::Lora, ComputeDType::F16, nullptr);
}

TEST(checkpointing_on_the_checked_backend_matches_the_plain_cpu_run) {
  check_bit_identical(Method::Full, ComputeDType::F32, checked);
  check_bit_identical(Method::Lora, ComputeDType::F32, checked);
  check_bit_identical(Method::Lora, ComputeDType::BF16, checked);
}

TEST(checkpointing_uses_the_device_segment_memory) {
  set_num_threads(2);
  auto backend = std::make_shared<s2s_test::CheckedHostBackend>();
  const Family& f = families()[0];
  s2s_test::FixtureBatch fx(fixture_dir(f.name));
  Setup s;
  s.checkpointing = true;
  s.backend = backend;
  auto r = build(f, s);
  micro_batch(*r, fx.batch, 7);
  CHECK_MSG(backend->segment_peak() > 0, "no segment memory was used on the device");
}

// ---- memory ----------------------------------------------------------------------------------

TEST(checkpointing_keeps_less_memory) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    size_t kept[2] = {0, 0}, segment[2] = {0, 0};
    for (int on = 0; on < 2; ++on) {
      Setup s;
      s.checkpointing = on == 1;
      auto r = build(f, s);
      r->graph.reset();
      r->graph.reset_peaks();
      micro_batch(*r, fx.batch, 7);
      kept[on] = r->graph.memory_peaks().main_bytes;
      segment[on] = r->graph.memory_peaks().segment_bytes;
    }
    std::printf("    %s: pass memory %zu bytes plain, %zu + %zu (one segment) checkpointed\n",
                f.name.c_str(), kept[0], kept[1], segment[1]);
    CHECK_MSG(segment[0] == 0, f.name + ": a plain run used segment memory");
    CHECK_MSG(segment[1] > 0, f.name + ": the checkpointed run used no segment memory");
    CHECK_MSG(kept[1] + segment[1] < kept[0],
              f.name + ": checkpointing did not lower the pass's memory");
  }
}

// ---- inference passes (Graph::transient) -------------------------------------------------------

// A no-grad pass (evaluation) runs every block through Graph::transient: the same logits and loss
// bit for bit as the pass with gradients, and far less memory kept: one block's activations in
// the segment memory, each block's output in the pass's. The decoding path's prefill
// (forward_cached over several positions) does the same; a decoding step (one position) runs its
// blocks in place.
TEST(inference_passes_keep_one_block_of_activations) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    auto r = build(f, Setup{});
    Graph& g = r->graph;
    size_t kept[2] = {0, 0}, segment[2] = {0, 0};
    std::vector<uint8_t> logits[2];
    float loss[2] = {0, 0};
    for (int no_grad = 0; no_grad < 2; ++no_grad) {
      g.reset();
      g.reset_peaks();
      g.training = false;
      g.no_grad = no_grad == 1;
      const ForwardResult out = r->model->forward(g, fx.batch, LossReduction::Mean);
      logits[no_grad] = bytes_of(r->model->backend(), out.logits->value);
      loss[no_grad] = g.read_scalar(out.loss);
      kept[no_grad] = g.memory_peaks().main_bytes;
      segment[no_grad] = g.memory_peaks().segment_bytes;
    }
    g.no_grad = false;
    std::printf("    %s: evaluation pass %zu bytes with gradients, %zu + %zu (one block) without\n",
                f.name.c_str(), kept[0], kept[1], segment[1]);
    CHECK_MSG(logits[0] == logits[1] && std::memcmp(&loss[0], &loss[1], sizeof(float)) == 0,
              f.name + ": the no-grad pass changed the logits or the loss");
    CHECK_MSG(segment[0] == 0, f.name + ": a pass with gradients used segment memory");
    CHECK_MSG(segment[1] > 0, f.name + ": the no-grad pass used no segment memory");
    CHECK_MSG(kept[1] + segment[1] < kept[0], f.name + ": the no-grad pass kept as much memory");
  }
}

// ---- the segment contract ----------------------------------------------------------------------

TEST(checkpoint_segment_contract) {
  Graph g;
  ParamStore params;
  Param& p = params.create("w", {4});
  Var* x = g.output({4}, true);
  std::memset(x->value.data, 0, 16);
  // A segment must return an activation it made.
  CHECK_THROWS_CODE(g.checkpoint([x](Graph&) { return x; }), code::kArgument);
  CHECK_THROWS_CODE(g.checkpoint([](Graph&) -> Var* { return nullptr; }), code::kArgument);
  CHECK_THROWS_CODE(g.checkpoint([&p](Graph& sg) { return sg.param(p); }), code::kArgument);
  // After a refused segment the graph works as before: a segment's output is the pass's copy.
  Var* y = g.checkpoint([x](Graph& sg) { return nn::relu(sg, nn::scale(sg, x, 2.0f)); });
  CHECK(!y->in_segment && y->requires_grad);
  // Nested: the inner segment runs as part of the outer one; no_grad: it just runs.
  Var* z = g.checkpoint([x](Graph& sg) {
    return sg.checkpoint([x](Graph& ig) { return nn::scale(ig, x, 3.0f); });
  });
  CHECK(!z->in_segment);
  for (int i = 0; i < 4; ++i) x->value.f32()[i] = float(i) - 1.5f;
  // transient with gradients: the block just runs, in the pass's memory, and records backward.
  Var* t = g.transient([x](Graph& sg) { return nn::scale(sg, x, 5.0f); });
  CHECK(!t->in_segment && t->requires_grad);
  // no_grad: both run the block in the segment memory and return the pass's copy of its output.
  g.no_grad = true;
  Var* w = g.checkpoint([x](Graph& sg) { return nn::scale(sg, x, 3.0f); });
  CHECK(!w->in_segment && !w->requires_grad);
  CHECK(g.memory_peaks().segment_bytes > 0);
  const float* xv = x->value.f32();
  const float* wv = w->value.f32();
  for (int i = 0; i < 4; ++i) CHECK(wv[i] == 3.0f * xv[i]);
  CHECK_THROWS_CODE(g.transient([x](Graph&) { return x; }), code::kArgument);
}
