// The chunked loss (nn::linear_cross_entropy, Model::set_chunked_loss): the LM head and the loss
// a few rows at a time, the logits never whole. Checked against the PyTorch fixtures (loss and
// every gradient, each fixture model), against the plain path (the loss, every gradient but the
// head's bit for bit, the head's up to the order its chunks are summed in) in fp32, bf16 and
// fp16 compute, full fine-tuning and LoRA, with dropout, over accumulated micro-batches; on the
// checked device backend bit for bit against the CPU; and for what it promises: less memory, no
// logits, the plain path where LoRA targets the head, rows without labels.
#include <cmath>
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

const std::vector<std::string> kFixtures = {"gpt2", "llama-gqa", "qwen2", "t5-gated",
                                            "t5-relu-tied"};

using namespace s2s_test::training;

std::vector<float> values_of(Backend& backend, const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) backend.download(out.data(), t.data, sizeof(float) * out.size());
  return out;
}

// The largest difference between got's and want's losses (relative to max(1, |want|)) and
// trainable gradients (each relative to its tensor's largest value).
double distance(Run& got, Run& want, std::string* worst = nullptr) {
  double d = 0;
  for (size_t i = 0; i < want.losses.size() && i < got.losses.size(); ++i) {
    d = std::fmax(d, std::fabs(double(got.losses[i]) - want.losses[i]) /
                         std::fmax(1.0, std::fabs(double(want.losses[i]))));
  }
  std::vector<Param*> gp = got.model->params().all(), wp = want.model->params().all();
  CHECK(gp.size() == wp.size() && got.losses.size() == want.losses.size());
  for (size_t i = 0; i < gp.size() && i < wp.size(); ++i) {
    if (!wp[i]->trainable) continue;
    const std::vector<float> a = values_of(got.model->backend(), gp[i]->grad);
    const std::vector<float> b = values_of(want.model->backend(), wp[i]->grad);
    double scale = 1e-30;
    for (float v : b) scale = std::fmax(scale, std::fabs(v));
    const double e = s2s_test::max_abs_error(a.data(), b.data(), b.size()) / scale;
    if (e > d && worst) *worst = wp[i]->name;
    d = std::fmax(d, e);
  }
  return d;
}

// Bit for bit: losses and every trainable gradient.
bool identical(Run& got, Run& want) {
  if (got.losses != want.losses) return false;
  std::vector<Param*> gp = got.model->params().all(), wp = want.model->params().all();
  for (size_t i = 0; i < gp.size() && i < wp.size(); ++i) {
    if (!wp[i]->trainable) continue;
    if (values_of(got.model->backend(), gp[i]->grad) !=
        values_of(want.model->backend(), wp[i]->grad)) {
      return false;
    }
  }
  return gp.size() == wp.size();
}

void check_against_plain(Method method, ComputeDType compute) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    Setup plain;
    plain.method = method;
    plain.compute = compute;
    auto want = build(f, plain);
    micro_batch(*want, fx.batch, 7);
    micro_batch(*want, fx.batch, 8, 0.25f);  // a seed other than 1 (fp16's loss scale, Mean)
    double worst_seen = 0;
    // 1 row: chunks without a counted row (each sequence's last position); 3: uneven chunks;
    // 1000: one chunk, which must give the plain path's bits everywhere.
    for (int64_t rows : {1, 3, 1000}) {
      Setup s = plain;
      s.chunk_rows = rows;
      // got: the gradients made in the backward; ahead: made in the forward, the seed known.
      auto got = build(f, s), ahead = build(f, s);
      for (Run* r : {got.get(), ahead.get()}) {
        // A plain pass first leaves stale values in the graph's memory, where a chunked pass's
        // fresh buffers must still be written everywhere (rows without a counted label).
        r->model->set_chunked_loss(false);
        micro_batch(*r, fx.batch, 9);
        r->model->params().zero_grads();
        r->losses.clear();
        r->model->set_chunked_loss(true, rows);
        const bool known = r == ahead.get();
        const ForwardResult out = micro_batch(*r, fx.batch, 7, 1.0f, known);
        CHECK_MSG(out.logits == nullptr, f.name + ": a chunked forward returned logits");
        micro_batch(*r, fx.batch, 8, 0.25f, known);
      }
      const std::string what = f.name + (method == Method::Lora ? " LoRA " : " full ") +
                               compute_dtype_name(compute) + ", " + std::to_string(rows) +
                               "-row chunks";
      CHECK_MSG(identical(*ahead, *got),
                what + ": the gradients made ahead are not those made in the backward");
      if (rows >= 1000) {
        CHECK_MSG(identical(*got, *want), what + ": one chunk is not the plain path's bits");
        continue;
      }
      // The CPU's fp32 GEMM takes another path for a few rows than for many, so the logits, and
      // from them every gradient, may differ in the last bits (2e-6 at most seen here); a 1/1024
      // error in the scale is 5e-4 (chunked_loss_comparison_sees_a_wrong_scale). Under 16-bit
      // compute such a last-bit difference can flip the rounding of a 16-bit dlogit (2^-11 of it
      // in fp16), which every gradient behind it carries: 2.3e-4 seen for T5's encoder under fp16
      // LoRA on an AVX2 machine (none on AVX-512 ones). A wrong seed (0.25 here) is far larger.
      const double tolerance = compute == ComputeDType::F32 ? 2e-5 : 1e-3;
      std::string worst;
      const double d = distance(*got, *want, &worst);
      CHECK_MSG(d <= tolerance, what + ": " + std::to_string(d) + " from the plain path (" +
                                    worst + ")");
      worst_seen = std::fmax(worst_seen, d);
    }
    std::printf("    %s %s %s: chunked within %.1e of the plain path (losses %.6f, %.6f)\n",
                f.name.c_str(), method == Method::Lora ? "LoRA" : "full",
                compute_dtype_name(compute), worst_seen, want->losses[0], want->losses[1]);
  }
}

std::shared_ptr<Backend> checked() { return std::make_shared<s2s_test::CheckedHostBackend>(); }

}  // namespace

TEST(chunked_loss_matches_the_pytorch_fixtures) {
  set_num_threads(2);
  for (const std::string& name : kFixtures) {
    const std::string dir = fixture_dir(name);
    std::unique_ptr<Model> m = s2s_test::load_fixture_model(dir);
    for (Param* p : m->params().all()) m->params().set_trainable(*p, true);
    m->set_chunked_loss(true, 3);
    s2s_test::FixtureBatch fx(dir);
    Graph g;
    ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
    const double loss_err =
        std::fabs(double(r.loss->value.f32()[0]) - fx.file->view("loss").f32()[0]);
    CHECK_ERR(loss_err, 1e-5, name + " loss");
    g.backward(r.loss);
    int checked_grads = 0;
    for (Param* p : m->params().all()) {
      const s2s::SafetensorsTensor* t = fx.file->find("grad." + p->name);
      CHECK_MSG(t != nullptr, name + ": fixture has no grad." + p->name);
      if (t == nullptr) continue;
      const Tensor ref = fx.file->view("grad." + p->name);
      double max_ref = 0;
      for (int64_t i = 0; i < ref.numel(); ++i) {
        max_ref = std::fmax(max_ref, std::fabs(ref.f32()[i]));
      }
      const double err = s2s_test::max_abs_error(p->grad.f32(), ref.f32(), ref.numel());
      CHECK_ERR(err, 1e-5 + 1e-3 * max_ref, name + " grad." + p->name);
      ++checked_grads;
    }
    CHECK(checked_grads == static_cast<int>(m->params().all().size()));
    std::printf("    %s: loss %.2e from the fixture, %d gradients within tolerance\n",
                name.c_str(), loss_err, checked_grads);
  }
}

TEST(chunked_loss_full_fp32_matches_the_plain_path) {
  check_against_plain(Method::Full, ComputeDType::F32);
}
TEST(chunked_loss_lora_fp32_matches_the_plain_path) {
  check_against_plain(Method::Lora, ComputeDType::F32);
}
TEST(chunked_loss_full_bf16_matches_the_plain_path) {
  check_against_plain(Method::Full, ComputeDType::BF16);
}
TEST(chunked_loss_lora_bf16_matches_the_plain_path) {
  check_against_plain(Method::Lora, ComputeDType::BF16);
}
TEST(chunked_loss_f16_matches_the_plain_path) {
  check_against_plain(Method::Full, ComputeDType::F16);
  check_against_plain(Method::Lora, ComputeDType::F16);
}

// The comparison can fail: a backward seeded 1/1024 off (a wrong dloss scale) is far outside it.
TEST(chunked_loss_comparison_sees_a_wrong_scale) {
  set_num_threads(2);
  const Family& f = families()[0];
  s2s_test::FixtureBatch fx(fixture_dir(f.name));
  auto want = build(f, Setup{});
  micro_batch(*want, fx.batch, 7);
  Setup s;
  s.chunk_rows = 3;
  auto got = build(f, s);
  micro_batch(*got, fx.batch, 7, 1.0f + 1.0f / 1024);
  got->losses = want->losses;
  CHECK(distance(*got, *want) > 1e-4);
}

// With gradient checkpointing (the blocks recomputed in the backward, after the head's
// gradients were made in the forward): the same bits as without the seed known, and the plain
// checkpointed run's gradients.
TEST(chunked_loss_with_the_seed_known_under_gradient_checkpointing) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    Setup s;
    s.checkpointing = true;
    auto want = build(f, s);
    s.chunk_rows = 3;
    auto late = build(f, s), ahead = build(f, s);
    for (Run* r : {want.get(), late.get(), ahead.get()}) {
      micro_batch(*r, fx.batch, 7, 1.0f, r == ahead.get());
      micro_batch(*r, fx.batch, 8, 0.25f, r == ahead.get());
    }
    CHECK_MSG(identical(*ahead, *late), f.name + ": the seed known changed a bit");
    const double d = distance(*ahead, *want);
    CHECK_MSG(d <= 2e-5, f.name + ": " + std::to_string(d) + " from the plain path");
  }
}

// Graph::known_dloss is a promise: the head's gradient is in after the forward, so a backward
// seeded otherwise must fail loudly rather than leave it wrong.
TEST(chunked_loss_checks_the_promised_seed) {
  set_num_threads(2);
  const Family& f = families()[0];
  s2s_test::FixtureBatch fx(fixture_dir(f.name));
  Setup s;
  s.chunk_rows = 3;
  auto r = build(f, s);
  Graph& g = r->graph;
  g.reset();
  g.known_dloss = 1.0f;
  ForwardResult out = r->model->forward(g, fx.batch, LossReduction::Sum);
  CHECK_THROWS_CODE(g.backward(out.loss, 0.5f), "S2S_INTERNAL");
  // reset() forgets the promise: the next pass makes its gradients in the backward.
  g.reset();
  CHECK(!g.known_dloss.has_value());
}

TEST(chunked_loss_on_the_checked_backend_matches_the_cpu) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    for (ComputeDType compute : {ComputeDType::F32, ComputeDType::BF16}) {
      Setup s;
      s.compute = compute;
      s.chunk_rows = 3;
      auto want = build(f, s);
      s.backend = checked();
      auto got = build(f, s);
      s.backend = checked();
      auto ahead = build(f, s);
      for (Run* r : {want.get(), got.get(), ahead.get()}) {
        micro_batch(*r, fx.batch, 7, 1.0f, r == ahead.get());
        micro_batch(*r, fx.batch, 8, 1.0f, r == ahead.get());
      }
      const std::string what =
          f.name + " " + compute_dtype_name(compute) + " chunked on the checked backend";
      CHECK_MSG(identical(*got, *want), what + ": not the CPU's bits");
      CHECK_MSG(identical(*ahead, *want), what + ", the seed known: not the CPU's bits");
    }
  }
}

// Graph::loss_only: where the backend pads the logits' rows for its GEMMs (the checked backend
// does, as the CUDA backend does), the head and the loss run as one chunk of padded rows and
// return no logits, with the CPU's plain bits, whether the seed is known ahead or not; on the
// CPU, whose rows are not padded, it changes nothing (the plain path, its logits).
TEST(loss_only_pads_the_logits_rows_with_the_plain_bits) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    for (ComputeDType compute : {ComputeDType::F32, ComputeDType::BF16, ComputeDType::F16}) {
      for (Method method : {Method::Full, Method::Lora}) {
        Setup s;
        s.compute = compute;
        s.method = method;
        auto want = build(f, s);
        s.loss_only = true;
        auto on_cpu = build(f, s);
        s.backend = checked();
        auto got = build(f, s);
        s.backend = checked();
        auto ahead = build(f, s);
        for (Run* r : {want.get(), on_cpu.get(), got.get(), ahead.get()}) {
          const bool known = r == ahead.get();
          const ForwardResult out = micro_batch(*r, fx.batch, 7, 1.0f, known);
          micro_batch(*r, fx.batch, 8, 0.25f, known);
          const bool padded = r == got.get() || r == ahead.get();
          CHECK_MSG((out.logits == nullptr) == padded,
                    f.name + ": logits " + (padded ? "returned" : "missing"));
        }
        const std::string what = f.name + (method == Method::Lora ? " LoRA " : " full ") +
                                 compute_dtype_name(compute) + " loss only";
        CHECK_MSG(identical(*on_cpu, *want), what + " on the CPU: not the plain path's bits");
        CHECK_MSG(identical(*got, *want), what + ", padded rows: not the CPU's bits");
        CHECK_MSG(identical(*ahead, *want), what + ", padded rows, the seed known: not the "
                                                   "CPU's bits");
      }
    }
  }
}

TEST(chunked_loss_keeps_less_memory) {
  set_num_threads(2);
  for (const Family& f : families()) {
    s2s_test::FixtureBatch fx(fixture_dir(f.name));
    size_t peak[2] = {0, 0};
    for (int chunked = 0; chunked < 2; ++chunked) {
      Setup s;
      s.chunk_rows = chunked ? 4 : -1;
      auto r = build(f, s);
      r->graph.reset();
      r->graph.reset_peaks();
      micro_batch(*r, fx.batch, 7);
      peak[chunked] = r->graph.memory_peaks().main_bytes;
    }
    // The plain pass keeps the (N,V) logits and their f32 gradient; the chunked one, 4 rows of
    // each and the (N,) lse.
    const int64_t V = s2s_test::load_fixture_model(fixture_dir(f.name))->config().vocab_size;
    const int64_t N = fx.batch.B * (fx.batch.Td > 0 ? fx.batch.Td : fx.batch.T);
    const size_t least = static_cast<size_t>(2 * (N - 4) * V * 4 - N * 4);
    std::printf("    %s: pass memory %zu bytes plain, %zu chunked (logits %lld x %lld)\n",
                f.name.c_str(), peak[0], peak[1], static_cast<long long>(N),
                static_cast<long long>(V));
    CHECK_MSG(peak[1] + least <= peak[0],
              f.name + ": the chunked loss did not save the logits and their gradient");
  }
}

TEST(chunked_loss_logits_without_labels_and_plain_under_a_lora_head) {
  set_num_threads(2);
  const Family& f = families()[1];  // llama-gqa: an untied lm_head LoRA may target
  s2s_test::FixtureBatch fx(fixture_dir(f.name));
  // No labels: the logits, as always.
  Setup s;
  s.chunk_rows = 3;
  auto r = build(f, s);
  Batch no_labels = fx.batch;
  no_labels.labels = nullptr;
  r->graph.reset();
  ForwardResult out = r->model->forward(r->graph, no_labels, LossReduction::Mean);
  CHECK(out.logits != nullptr && out.loss == nullptr);
  // LoRA on the head: the plain path (the adapter reads the head's input and dlogits).
  s.method = Method::Lora;
  s.lora_targets = "lm_head";
  auto lora = build(f, s);
  Setup plain = s;
  plain.chunk_rows = -1;
  auto want = build(f, plain);
  lora->graph.reset();
  out = micro_batch(*lora, fx.batch, 7);
  CHECK_MSG(out.logits != nullptr, "LoRA on the head should keep the plain path");
  micro_batch(*want, fx.batch, 7);
  CHECK_MSG(identical(*lora, *want), "LoRA on lm_head: not the plain path's bits");
}

TEST(chunked_loss_without_counted_rows) {
  set_num_threads(2);
  const Family& f = families()[0];
  s2s_test::FixtureBatch fx(fixture_dir(f.name));
  std::vector<int32_t> ignored(static_cast<size_t>(fx.batch.B * fx.batch.T), -100);
  Batch batch = fx.batch;
  batch.labels = ignored.data();
  Setup s;
  s.chunk_rows = 3;
  auto r = build(f, s);
  Graph& g = r->graph;
  g.reset();
  ForwardResult mean = r->model->forward(g, batch, LossReduction::Mean);
  CHECK(mean.count == 0 && std::isnan(g.read_scalar(mean.loss->value)));
  g.reset();
  ForwardResult sum = r->model->forward(g, batch, LossReduction::Sum);
  CHECK(sum.count == 0 && g.read_scalar(sum.loss->value) == 0.0f);
  g.backward(sum.loss);
  for (Param* p : r->model->params().all()) {
    for (float v : values_of(r->model->backend(), p->grad)) {
      CHECK_MSG(v == 0.0f, "a gradient from a batch without labels: " + p->name);
      if (v != 0.0f) break;
    }
  }
}

// A label outside the vocabulary is refused on the host, naming the row, before any chunk runs.
TEST(chunked_loss_rejects_a_bad_label) {
  set_num_threads(2);
  const Family& f = families()[0];
  s2s_test::FixtureBatch fx(fixture_dir(f.name));
  std::vector<int32_t> labels(fx.batch.labels, fx.batch.labels + fx.batch.B * fx.batch.T);
  labels[2] = 1 << 20;
  Batch batch = fx.batch;
  batch.labels = labels.data();
  Setup s;
  s.chunk_rows = 3;
  auto r = build(f, s);
  r->graph.reset();
  try {
    r->model->forward(r->graph, batch, LossReduction::Mean);
    CHECK_MSG(false, "a label outside the vocabulary was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.code()) == code::kArgument);
    CHECK_MSG(std::string(e.what()).find("labels[") != std::string::npos, e.what());
  }
}

// fp16's seed (scale / count) is known ahead only if the count is: Model::counted_labels must be
// the count forward() reports. The fixtures' rows start with ignored labels (the prompt), so a
// row's first label is set here (a decoder never predicts it; T5 does), and a row's last ignored.
TEST(counted_labels_are_the_forwards_count) {
  set_num_threads(2);
  for (const std::string& name : kFixtures) {
    const std::string dir = fixture_dir(name);
    std::unique_ptr<Model> m = s2s_test::load_fixture_model(dir);
    s2s_test::FixtureBatch fx(dir);
    const int64_t cols = fx.batch.Td > 0 ? fx.batch.Td : fx.batch.T;
    std::vector<int32_t> labels(fx.batch.labels, fx.batch.labels + fx.batch.B * cols);
    labels[0] = 1;
    labels[static_cast<size_t>(cols)] = 2;
    labels[static_cast<size_t>(cols - 1)] = -100;
    for (const int32_t* l : {fx.batch.labels, static_cast<const int32_t*>(labels.data())}) {
      Batch batch = fx.batch;
      batch.labels = l;
      Graph g;
      const ForwardResult r = m->forward(g, batch, LossReduction::Sum);
      CHECK_MSG(m->counted_labels(batch) == r.count,
                name + ": counted_labels " + std::to_string(m->counted_labels(batch)) +
                    ", forward counted " + std::to_string(r.count));
    }
  }
}

TEST(chunk_rows_follow_the_vocabulary) {
  CHECK(nn::loss_chunk_rows(50257) == 320);
  CHECK(nn::loss_chunk_rows(151936) == 96);
  CHECK(nn::loss_chunk_rows(int64_t{1} << 30) == 1);
  // A device backend's floor (Backend::min_loss_chunk_rows) wins where 64 MiB is fewer rows.
  CHECK(nn::loss_chunk_rows(50257, 4096) == 4096);
  CHECK(nn::loss_chunk_rows(int64_t{1} << 30, 4096) == 4096);
  CHECK(nn::loss_chunk_rows(100, 4096) == nn::loss_chunk_rows(100));
  CHECK(nn::loss_chunk_rows(100) % 16 == 0);
}
