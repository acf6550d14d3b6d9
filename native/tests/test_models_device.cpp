// The model path on a device backend, checked without a GPU: every parity fixture runs on the
// CheckedHostBackend (checked_backend.h: the CPU ops over a separate, normally inaccessible
// "device" address range) and must match the CPU backend bit for bit: logits, loss, gradients,
// ten AdamW steps, bf16 and fp16 compute, LoRA (attached on the device, dropout on, frozen bf16 views),
// merge, saved adapter / model / optimizer state. Since the checked backend rejects any op
// argument outside its range and host code touching that range crashes, passing this means the
// layers, the param store, the optimizer and the savers reach tensor memory only through the
// Backend. It says nothing about the CUDA kernels themselves (test_cuda_ops / test_cuda_models,
// on a GPU).
#include <sys/wait.h>
#include <unistd.h>

#include "checked_backend.h"
#include "harness.h"
#include "model_device_parity.h"
#include "s2s/models/init_weights.h"
#include "s2s/nn/functional.h"

using namespace s2s;
using s2s_test::CheckedHostBackend;

namespace {

const s2s_test::DeviceTolerance kExact = [] {
  s2s_test::DeviceTolerance t;
  t.exact = true;
  return t;
}();

std::shared_ptr<Backend> checked() { return std::make_shared<CheckedHostBackend>(); }

}  // namespace

// ---- the checker itself catches what it is there to catch --------------------------------------

TEST(checked_backend_rejects_host_memory_in_an_op) {
  auto b = std::make_shared<CheckedHostBackend>();
  Graph g;
  g.set_backend(b);
  Var* x = g.output({4}, false);  // device memory
  std::vector<float> host(4, 1.0f);
  const Tensor h = Tensor::contiguous(host.data(), DType::F32, {4});
  CHECK_THROWS_CODE(b->relu_forward(x->value, h), code::kInternal);
  CHECK_THROWS_CODE(b->relu_forward(h, x->value), code::kInternal);
  b->relu_forward(x->value, x->value);  // both device: fine
  // A freed buffer is no longer device memory.
  Buffer buf = b->allocate(16);
  const Tensor freed = Tensor::contiguous(buf.data(), DType::F32, {4});
  b->fill_zero(buf.data(), 16);
  buf.reset();
  CHECK_THROWS_CODE(b->relu_forward(x->value, freed), code::kInternal);
  // Copies check their direction.
  CHECK_THROWS_CODE(b->upload(host.data(), host.data(), 16), code::kInternal);
  CHECK_THROWS_CODE(b->download(x->value.data, x->value.data, 16), code::kInternal);
}

TEST(checked_backend_crashes_host_reads_of_device_memory) {
  // In a child process: reading device memory outside the backend's calls must be fatal.
  std::printf("    (the child's 'host code touched device memory' report below is expected)\n");
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    CheckedHostBackend b;
    Buffer buf = b.allocate(64);
    b.fill_zero(buf.data(), 64);
    volatile float v = buf.f32()[3];  // not through the backend: SIGSEGV
    (void)v;
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
            "expected the child to die of SIGSEGV, status " + std::to_string(status));
}

TEST(model_refuses_a_graph_on_another_backend) {
  s2s_test::parity::Setup s;
  auto dev = s2s_test::parity::build("gpt2", s, checked());
  s2s_test::parity::Fixture fx(s2s_test::fixture_dir("gpt2"));
  Graph cpu_graph;  // the CPU backend: the params are elsewhere
  CHECK_THROWS_CODE(dev->model->forward(cpu_graph, fx.batch, LossReduction::Mean), code::kArgument);
  // Host-only helpers refuse a device model (init_weights: initialise, then move), and a KV cache
  // in host memory is refused by a device model's generation forward.
  CHECK(dev->model->device().kind == DeviceKind::Cuda);
  CHECK_THROWS_CODE(init_weights(*dev->model, 1), code::kArgument);
  CHECK_THROWS_CODE(expect_host_model(*dev->model, "init_weights"), code::kDevice);
  KVCache cache;
  cache.reset(dev->model->self_cache_shape(), 1, 4);
  dev->graph.no_grad = true;
  const int32_t tokens[2] = {1, 2};
  CHECK_THROWS_CODE(dev->model->forward_cached(dev->graph, tokens, tokens, 1, 2, cache),
                    code::kArgument);
}

// ---- the parity fixtures on the checked backend, bit for bit ------------------------------------

TEST(device_parity_full_training_fp32) {
  for (const std::string& name : s2s_test::parity_fixtures()) {
    auto b = std::make_shared<CheckedHostBackend>();
    s2s_test::check_full_training_on_device(name, [b] { return b; }, kExact, ComputeDType::F32);
    CHECK_MSG(b->ops_run() > 100, name + ": the checked backend ran " + std::to_string(b->ops_run()) + " calls");
    std::printf("    %s fp32: %lld checked backend calls\n", name.c_str(), (long long)b->ops_run());
  }
}

TEST(device_parity_full_training_bf16_compute) {
  for (const std::string& name : s2s_test::parity_fixtures()) {
    s2s_test::check_full_training_on_device(name, checked, kExact, ComputeDType::BF16);
  }
}

TEST(device_parity_full_training_f16_compute) {
  for (const std::string& name : s2s_test::parity_fixtures()) {
    s2s_test::check_full_training_on_device(name, checked, kExact, ComputeDType::F16);
  }
}

TEST(device_parity_lora_with_dropout_and_frozen_views) {
  for (const std::string& name : s2s_test::parity_fixtures()) {
    s2s_test::check_lora_on_device(name, checked, kExact);
  }
}
