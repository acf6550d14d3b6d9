// Every CUDA op against the CPU op (the reference), forward and backward, with a normalised-error
// tolerance per op (max |gpu - cpu| / max(1, |cpu|)); ops that are exact by construction (casts,
// dropout masks, AdamW, gathers) are compared bit for bit. Runs only where the CUDA backend is
// built in and the runtime finds a device; elsewhere it prints why and registers no case
// ("0 passed, 0 failed"), so a machine without a GPU neither passes nor fails these.
// Tolerances: fp32 kernels whose summation order differs from the CPU's get 1e-5 (elementwise,
// norms) to 1e-4 (attention, GEMM-based backward); bf16 tensor-core GEMMs 2e-3 (both sides round
// the operands identically; only the fp32 accumulation order differs).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cuda_test_cases.h"
#include "harness.h"
#include "s2s/device.h"
#include "s2s/error.h"

#if S2S_HAVE_CUDA
#include "backends/cuda/captured_graph.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/half_bits.h"
#include "backends/cuda/launch.h"
#include "ops_test_util.h"
#include "s2s/gemm.h"
#include "s2s/ops/adamw.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/attention_cached.h"
#include "s2s/ops/cast.h"
#include "s2s/ops/cross_entropy.h"
#include "s2s/ops/dropout.h"
#include "s2s/ops/elementwise.h"
#include "s2s/ops/embedding.h"
#include "s2s/ops/geglu.h"
#include "s2s/ops/gelu.h"
#include "s2s/ops/grad_norm.h"
#include "s2s/ops/kv_cache_append.h"
#include "s2s/ops/layernorm.h"
#include "s2s/ops/linear.h"
#include "s2s/ops/relu.h"
#include "s2s/ops/rmsnorm.h"
#include "s2s/ops/rope.h"
#include "s2s/ops/silu.h"
#include "s2s/ops/softmax.h"
#include "s2s/ops/swiglu.h"
#include "s2s/ops/t5_relative_position.h"
#include "s2s/train/loss_scaler.h"
#if S2S_SIMT_SIM
#include "cuda_runtime.h"  // the stand-in's queued_work
#endif

using namespace s2s;
using s2s_test::max_normalized_error;
using s2s_test::random_vector;

namespace {

cuda::Context& ctx() {
  static cuda::Context c;
  return c;
}

// A device copy of host data, with a Tensor view of it.
struct Dev {
  cuda::DeviceBuffer buf;
  Tensor t;
  template <typename T>
  Dev(const std::vector<T>& host, DType dt, std::initializer_list<int64_t> shape)
      : buf(ctx(), host.size() * sizeof(T)) {
    cuda::upload(ctx(), buf.data(), host.data(), host.size() * sizeof(T));
    t = Tensor::contiguous(buf.data(), dt, shape);
  }
  explicit Dev(const std::vector<float>& host, std::initializer_list<int64_t> shape)
      : Dev(host, DType::F32, shape) {}
  template <typename T>
  T* ptr() const { return static_cast<T*>(buf.data()); }
};
std::vector<float> host_of(const Dev& d) {
  std::vector<float> out(size_t(d.t.numel()));
  cuda::download(ctx(), out.data(), d.buf.data(), out.size() * sizeof(float));
  return out;
}
std::vector<uint16_t> host16_of(const Dev& d) {
  std::vector<uint16_t> out(size_t(d.t.numel()));
  cuda::download(ctx(), out.data(), d.buf.data(), out.size() * sizeof(uint16_t));
  return out;
}

Tensor view(std::vector<float>& v, std::initializer_list<int64_t> shape) { return opt::view(v, shape); }
Tensor none() { return Tensor{}; }

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double tol,
                  const char* what) {
  CHECK_ERR(max_normalized_error(gpu.data(), cpu.data(), cpu.size()), tol, what);
}

}  // namespace

// ---- runtime, errors --------------------------------------------------------------------------

CUDA_TEST(cuda_errors_are_s2s_errors) {
  cuda::ContextOptions o;
  o.device = 99;
  CHECK_THROWS_CODE(cuda::Context{o}, code::kDevice);
  // An allocation no GPU can satisfy is S2S_OUT_OF_MEMORY, and the context stays usable.
  CHECK_THROWS_CODE(cuda::DeviceBuffer(ctx(), size_t(1) << 50), code::kOutOfMemory);
  std::vector<float> x = {1, 2, 3};
  Dev d(x, {3});
  CHECK(host_of(d) == x);
}

CUDA_TEST(cuda_status_lists_the_device) {
  const CudaStatus s = cuda_status();
  CHECK(s.built && !s.devices.empty());
  CHECK(!s.devices[0].name.empty() && s.devices[0].total_bytes > 0);
  std::printf("    device 0: %s, sm_%d%d, %.1f GiB\n", s.devices[0].name.c_str(),
              s.devices[0].compute_major, s.devices[0].compute_minor,
              double(s.devices[0].total_bytes) / (1 << 30));
  // The cuBLASLt loaded at run time (the simulator's registered stand-in there).
  CHECK_MSG(s.usable() && !s.cublaslt_library.empty(), s.problem);
  std::printf("    cuBLASLt: %s (version %zu)\n", s.cublaslt_library.c_str(), s.cublaslt_version);
}

// ---- norms, softmax ---------------------------------------------------------------------------

static void check_layernorm(int64_t N, int64_t C) {
  std::vector<float> x = random_vector(N * C, 1, -2, 2), w = random_vector(C, 2, 0.5f, 1.5f);
  std::vector<float> b = random_vector(C, 3), dy = random_vector(N * C, 4);
  std::vector<float> out(N * C), mean(N), rstd(N), dx(N * C, 0.f), dw(C, 0.f), db(C, 0.f);
  layernorm_forward(view(out, {N, C}), view(mean, {N}), view(rstd, {N}), view(x, {N, C}),
                    view(w, {C}), view(b, {C}), 1e-5f);
  layernorm_backward(view(dx, {N, C}), view(dw, {C}), view(db, {C}), view(dy, {N, C}),
                     view(x, {N, C}), view(w, {C}), view(mean, {N}), view(rstd, {N}));
  Dev gx(x, {N, C}), gw(w, {C}), gb(b, {C}), gdy(dy, {N, C});
  Dev gout(std::vector<float>(N * C), {N, C}), gmean(std::vector<float>(N), {N}),
      grstd(std::vector<float>(N), {N});
  Dev gdx(std::vector<float>(N * C, 0.f), {N, C}), gdw(std::vector<float>(C, 0.f), {C}),
      gdb(std::vector<float>(C, 0.f), {C});
  cuda::layernorm_forward(ctx(), gout.t, gmean.t, grstd.t, gx.t, gw.t, gb.t, 1e-5f);
  cuda::layernorm_backward(ctx(), gdx.t, gdw.t, gdb.t, gdy.t, gx.t, gw.t, gmean.t, grstd.t);
  expect_close(host_of(gout), out, 1e-5, "layernorm out");
  expect_close(host_of(grstd), rstd, 1e-5, "layernorm rstd");
  expect_close(host_of(gdx), dx, 1e-4, "layernorm dinp");
  expect_close(host_of(gdw), dw, 1e-4, "layernorm dweight");
  expect_close(host_of(gdb), db, 1e-4, "layernorm dbias");
}
CUDA_TEST(cuda_layernorm_warp_and_block_rows) {
  check_layernorm(37, 768);   // a warp per row
  check_layernorm(5, 3000);   // a block per row
  check_layernorm(300, 64);   // more than one reduction chunk of rows
}

// The norms' backward for every subset of gradients, added to what the tensors hold (dinp also
// overwritten), against the CPU op: the fused pass (warp rows over several chunks, block rows)
// and the separate kernels past its shared memory (layernorm's two sums at 6144 columns, where
// with the row reductions' static scratch they would pass the block's 48 KB, and at 7000; both
// at 9000). dinp must have the dinp kernel's bits; in the simulator the fused pass must be two
// launches.
CUDA_TEST(cuda_norm_backward_every_gradient_subset) {
  for (int64_t C : {64, 768, 3000, 6144, 7000, 9000}) {
    const int64_t N = C <= 768 ? 300 : 35;
    std::vector<float> x = random_vector(N * C, 40, -2, 2), w = random_vector(C, 41, 0.5f, 1.5f);
    std::vector<float> b = random_vector(C, 42), dy = random_vector(N * C, 43);
    std::vector<float> y(N * C), mean(N), rstd(N);
    Dev gx(x, {N, C}), gw(w, {C}), gb(b, {C}), gdy(dy, {N, C});
    Dev gy(y, {N, C}), gmean(mean, {N}), grstd(rstd, {N});
    for (int rms = 0; rms < 2; ++rms) {
      if (rms) {
        rmsnorm_forward(view(y, {N, C}), view(rstd, {N}), view(x, {N, C}), view(w, {C}), 1e-6f);
        cuda::rmsnorm_forward(ctx(), gy.t, grstd.t, gx.t, gw.t, 1e-6f);
      } else {
        layernorm_forward(view(y, {N, C}), view(mean, {N}), view(rstd, {N}), view(x, {N, C}),
                          view(w, {C}), view(b, {C}), 1e-5f);
        cuda::layernorm_forward(ctx(), gy.t, gmean.t, grstd.t, gx.t, gw.t, gb.t, 1e-5f);
      }
      for (int subset = 1; subset < (rms ? 4 : 8); ++subset) {
        const bool want_dx = subset & 1, want_dw = subset & 2, want_db = subset & 4;
        if (!want_dw && !want_db) continue;  // dinp alone: the dinp kernel (tests above)
        for (bool overwrite : {false, true}) {
          if (overwrite && !want_dx) continue;
          std::vector<float> dx = random_vector(N * C, 44), dw = random_vector(C, 45);
          std::vector<float> db = random_vector(C, 46);
          Dev gdx(dx, {N, C}), gdw(dw, {C}), gdb(db, {C});
          auto host = [](bool want, std::vector<float>& v, std::initializer_list<int64_t> shape) {
            return want ? view(v, shape) : Tensor{};
          };
          auto dev = [](bool want, const Dev& d) { return want ? d.t : Tensor{}; };
#if S2S_SIMT_SIM
          s2s::simt::queued_work() = s2s::simt::QueuedWork{};
#endif
          if (rms) {
            rmsnorm_backward(host(want_dx, dx, {N, C}), host(want_dw, dw, {C}), view(dy, {N, C}),
                             view(x, {N, C}), view(w, {C}), view(rstd, {N}), overwrite);
            cuda::rmsnorm_backward(ctx(), dev(want_dx, gdx), dev(want_dw, gdw), gdy.t, gx.t,
                                   gw.t, grstd.t, overwrite);
          } else {
            layernorm_backward(host(want_dx, dx, {N, C}), host(want_dw, dw, {C}),
                               host(want_db, db, {C}), view(dy, {N, C}), view(x, {N, C}),
                               view(w, {C}), view(mean, {N}), view(rstd, {N}), overwrite);
            cuda::layernorm_backward(ctx(), dev(want_dx, gdx), dev(want_dw, gdw),
                                     dev(want_db, gdb), gdy.t, gx.t, gw.t, gmean.t, grstd.t,
                                     overwrite);
          }
          const std::string tag = std::string(rms ? "rmsnorm" : "layernorm") + " C=" +
                                  std::to_string(C) + " subset " + std::to_string(subset) +
                                  (overwrite ? " overwrite" : "");
#if S2S_SIMT_SIM
          const int sums = int(want_dw) + int(want_db);
          const bool fused = cuda::norm_backward_plan(N, C, sums).fused;
          CHECK_MSG(fused == (C <= 3000 || (C >= 6144 && C <= 7000 && sums == 1)), tag + ": the plan");
          if (fused) CHECK_MSG(s2s::simt::queued_work().launches == 2, tag + ": launches");
#endif
          expect_close(host_of(gdx), dx, 1e-4, (tag + " dinp").c_str());
          if (want_dx) {  // dinp alone takes the dinp kernel: the fused pass gives its bits
            Dev alone(random_vector(N * C, 44), {N, C});
            if (rms) {
              cuda::rmsnorm_backward(ctx(), alone.t, Tensor{}, gdy.t, gx.t, gw.t, grstd.t,
                                     overwrite);
            } else {
              cuda::layernorm_backward(ctx(), alone.t, Tensor{}, Tensor{}, gdy.t, gx.t, gw.t,
                                       gmean.t, grstd.t, overwrite);
            }
            CHECK_MSG(opt::same_values(host_of(alone), host_of(gdx)), tag + ": dinp's bits");
          }
          expect_close(host_of(gdw), dw, 1e-4, (tag + " dweight").c_str());
          expect_close(host_of(gdb), db, 1e-4, (tag + " dbias").c_str());
        }
      }
    }
  }
}

CUDA_TEST(cuda_rmsnorm) {
  for (int64_t C : {128, 2500}) {
    const int64_t N = 41;
    std::vector<float> x = random_vector(N * C, 5, -2, 2), w = random_vector(C, 6, 0.5f, 1.5f);
    std::vector<float> dy = random_vector(N * C, 7);
    std::vector<float> out(N * C), rstd(N), dx(N * C, 0.f), dw(C, 0.f);
    rmsnorm_forward(view(out, {N, C}), view(rstd, {N}), view(x, {N, C}), view(w, {C}), 1e-6f);
    rmsnorm_backward(view(dx, {N, C}), view(dw, {C}), view(dy, {N, C}), view(x, {N, C}),
                     view(w, {C}), view(rstd, {N}));
    Dev gx(x, {N, C}), gw(w, {C}), gdy(dy, {N, C}), gout(std::vector<float>(N * C), {N, C});
    Dev grstd(std::vector<float>(N), {N}), gdx(std::vector<float>(N * C, 0.f), {N, C});
    Dev gdw(std::vector<float>(C, 0.f), {C});
    cuda::rmsnorm_forward(ctx(), gout.t, grstd.t, gx.t, gw.t, 1e-6f);
    cuda::rmsnorm_backward(ctx(), gdx.t, gdw.t, gdy.t, gx.t, gw.t, grstd.t);
    expect_close(host_of(gout), out, 1e-5, "rmsnorm out");
    expect_close(host_of(gdx), dx, 1e-4, "rmsnorm dinp");
    expect_close(host_of(gdw), dw, 1e-4, "rmsnorm dweight");
  }
}

CUDA_TEST(cuda_softmax) {
  for (int64_t C : {100, 5000}) {
    const int64_t N = 9;
    std::vector<float> x = random_vector(N * C, 8, -5, 5), dy = random_vector(N * C, 9);
    std::vector<float> y(N * C), dx(N * C, 0.f);
    softmax_forward(view(y, {N, C}), view(x, {N, C}));
    softmax_backward(view(dx, {N, C}), view(dy, {N, C}), view(y, {N, C}));
    Dev gx(x, {N, C}), gdy(dy, {N, C}), gy(std::vector<float>(N * C), {N, C});
    Dev gdx(std::vector<float>(N * C, 0.f), {N, C});
    cuda::softmax_forward(ctx(), gy.t, gx.t);
    cuda::softmax_backward(ctx(), gdx.t, gdy.t, gy.t);
    expect_close(host_of(gy), y, 1e-5, "softmax out");
    expect_close(host_of(gdx), dx, 1e-5, "softmax dinp");
  }
}

// ---- activations ------------------------------------------------------------------------------

CUDA_TEST(cuda_activations) {
  const int64_t N = 33, H = 301;
  std::vector<float> x = random_vector(N * H, 10, -6, 6), u = random_vector(N * H, 11, -2, 2);
  std::vector<float> dy = random_vector(N * H, 12);
  Dev gx(x, {N, H}), gu(u, {N, H}), gdy(dy, {N, H});
  auto run_unary = [&](const char* name, auto cpu_f, auto cpu_b, auto gpu_f, auto gpu_b) {
    std::vector<float> y(N * H), dx(N * H, 0.f);
    cpu_f(view(y, {N, H}), view(x, {N, H}));
    cpu_b(view(dx, {N, H}), view(dy, {N, H}), view(x, {N, H}));
    Dev gy(std::vector<float>(N * H), {N, H}), gdx(std::vector<float>(N * H, 0.f), {N, H});
    gpu_f(gy.t, gx.t);
    gpu_b(gdx.t, gdy.t, gx.t);
    expect_close(host_of(gy), y, 1e-5, (std::string(name) + " forward").c_str());
    expect_close(host_of(gdx), dx, 1e-5, (std::string(name) + " backward").c_str());
  };
  for (GeluApprox a : {GeluApprox::Tanh, GeluApprox::None}) {
    run_unary("gelu",
              [&](const Tensor& o, const Tensor& i) { gelu_forward(o, i, a); },
              [&](const Tensor& d, const Tensor& g, const Tensor& i) { gelu_backward(d, g, i, a); },
              [&](const Tensor& o, const Tensor& i) { cuda::gelu_forward(ctx(), o, i, a); },
              [&](const Tensor& d, const Tensor& g, const Tensor& i) { cuda::gelu_backward(ctx(), d, g, i, a); });
  }
  run_unary("relu", [](const Tensor& o, const Tensor& i) { relu_forward(o, i); },
            [](const Tensor& d, const Tensor& g, const Tensor& i) { relu_backward(d, g, i); },
            [](const Tensor& o, const Tensor& i) { cuda::relu_forward(ctx(), o, i); },
            [](const Tensor& d, const Tensor& g, const Tensor& i) { cuda::relu_backward(ctx(), d, g, i); });
  run_unary("silu", [](const Tensor& o, const Tensor& i) { silu_forward(o, i); },
            [](const Tensor& d, const Tensor& g, const Tensor& i) { silu_backward(d, g, i); },
            [](const Tensor& o, const Tensor& i) { cuda::silu_forward(ctx(), o, i); },
            [](const Tensor& d, const Tensor& g, const Tensor& i) { cuda::silu_backward(ctx(), d, g, i); });
  // Gated products.
  for (int gated = 0; gated < 2; ++gated) {
    std::vector<float> y(N * H), dg(N * H, 0.f), du(N * H, 0.f);
    Dev gy(std::vector<float>(N * H), {N, H}), gdg(std::vector<float>(N * H, 0.f), {N, H});
    Dev gdu(std::vector<float>(N * H, 0.f), {N, H});
    if (gated == 0) {
      swiglu_forward(view(y, {N, H}), view(x, {N, H}), view(u, {N, H}));
      swiglu_backward(view(dg, {N, H}), view(du, {N, H}), view(dy, {N, H}), view(x, {N, H}), view(u, {N, H}));
      cuda::swiglu_forward(ctx(), gy.t, gx.t, gu.t);
      cuda::swiglu_backward(ctx(), gdg.t, gdu.t, gdy.t, gx.t, gu.t);
    } else {
      geglu_forward(view(y, {N, H}), view(x, {N, H}), view(u, {N, H}));
      geglu_backward(view(dg, {N, H}), view(du, {N, H}), view(dy, {N, H}), view(x, {N, H}), view(u, {N, H}));
      cuda::geglu_forward(ctx(), gy.t, gx.t, gu.t);
      cuda::geglu_backward(ctx(), gdg.t, gdu.t, gdy.t, gx.t, gu.t);
    }
    const char* name = gated == 0 ? "swiglu" : "geglu";
    expect_close(host_of(gy), y, 1e-5, name);
    expect_close(host_of(gdg), dg, 1e-5, name);
    expect_close(host_of(gdu), du, 1e-5, name);
  }
}

// Every backward op that can overwrite a fresh gradient (the nn layers' Graph::grad_for_write):
// written into NaN-filled memory it gives, on the device, what accumulating into zeros gives
// there (a read of the fresh buffer would show as NaN); the weights' gradients still accumulate.
CUDA_TEST(cuda_backward_ops_overwrite_fresh_gradients) {
  const int64_t N = 7, C = 96, n = N * C;
  std::vector<float> x = random_vector(n, 20, -3, 3), u = random_vector(n, 21, -2, 2);
  std::vector<float> dy = random_vector(n, 22), w = random_vector(C, 23, 0.5f, 1.5f);
  std::vector<float> b = random_vector(C, 24), start = random_vector(C, 25);
  Dev gx(x, {N, C}), gu(u, {N, C}), gdy(dy, {N, C}), gw(w, {C}), gb(b, {C});
  Dev gy(std::vector<float>(n), {N, C}), gmean(std::vector<float>(N), {N});
  Dev grstd(std::vector<float>(N), {N});
  std::vector<int32_t> pos(N);
  for (int64_t i = 0; i < N; ++i) pos[i] = int32_t(3 * i);
  Dev gpos(pos, DType::F32, {N});
  // op(d1, d2, dweight, overwrite); d2 and dweight only where the op has them.
  auto check = [&](const char* name, auto op) {
    Dev f1(opt::garbage(n), {N, C}), f2(opt::garbage(n), {N, C}), fw(start, {C});
    Dev z1(std::vector<float>(n, 0.f), {N, C}), z2(std::vector<float>(n, 0.f), {N, C});
    Dev zw(start, {C});
    op(f1.t, f2.t, fw.t, true);
    op(z1.t, z2.t, zw.t, false);
    CHECK_MSG(opt::same_values(host_of(f1), host_of(z1)) &&
                  opt::same_values(host_of(f2), host_of(z2)) &&
                  opt::bit_equal(host_of(fw), host_of(zw)),
              std::string(name) + ": overwriting differs from accumulating into zeros");
  };
  check("gelu", [&](const Tensor& d, const Tensor& d2, const Tensor&, bool o) {
    cuda::gelu_backward(ctx(), d, gdy.t, gx.t, GeluApprox::Tanh, o);
    cuda::gelu_backward(ctx(), d2, gdy.t, gx.t, GeluApprox::None, o);
  });
  check("relu, silu", [&](const Tensor& d, const Tensor& d2, const Tensor&, bool o) {
    cuda::relu_backward(ctx(), d, gdy.t, gx.t, o);
    cuda::silu_backward(ctx(), d2, gdy.t, gx.t, o);
  });
  check("swiglu", [&](const Tensor& d, const Tensor& d2, const Tensor&, bool o) {
    cuda::swiglu_backward(ctx(), d, d2, gdy.t, gx.t, gu.t, o);
  });
  check("geglu", [&](const Tensor& d, const Tensor& d2, const Tensor&, bool o) {
    cuda::geglu_backward(ctx(), d, d2, gdy.t, gx.t, gu.t, GeluApprox::None, o);
  });
  check("dropout", [&](const Tensor& d, const Tensor& d2, const Tensor&, bool o) {
    cuda::dropout_backward(ctx(), d, gdy.t, 0.1f, 77, 5, o);
    cuda::dropout_backward(ctx(), d2, gdy.t, 0.0f, 77, 5, o);
  });
  check("rope", [&](const Tensor& d, const Tensor& d2, const Tensor&, bool o) {
    const Tensor d4 = Tensor::contiguous(d.data, DType::F32, {1, N, 3, 32});
    const Tensor d24 = Tensor::contiguous(d2.data, DType::F32, {1, N, 3, 32});
    const Tensor dy4 = Tensor::contiguous(gdy.t.data, DType::F32, {1, N, 3, 32});
    cuda::rope_backward(ctx(), d4, dy4, gpos.ptr<int32_t>(), N, 10000.f, o);
    cuda::rope_backward(ctx(), d24, dy4, nullptr, 0, 10000.f, o);
  });
  check("layernorm", [&](const Tensor& d, const Tensor& d2, const Tensor& dw, bool o) {
    cuda::layernorm_forward(ctx(), gy.t, gmean.t, grstd.t, gx.t, gw.t, gb.t, 1e-5f);
    cuda::layernorm_backward(ctx(), d, dw, Tensor{}, gdy.t, gx.t, gw.t, gmean.t, grstd.t, o);
    cuda::rmsnorm_forward(ctx(), gy.t, grstd.t, gx.t, gw.t, 1e-6f);
    cuda::rmsnorm_backward(ctx(), d2, dw, gdy.t, gx.t, gw.t, grstd.t, o);
  });
  // Gated ops may write bf16 gradients when overwriting: the f32 overwrite's values rounded.
  for (int op = 0; op < 2; ++op) {
    auto run = [&](const Tensor& dg, const Tensor& du) {
      if (op == 0) cuda::swiglu_backward(ctx(), dg, du, gdy.t, gx.t, gu.t, true);
      else cuda::geglu_backward(ctx(), dg, du, gdy.t, gx.t, gu.t, GeluApprox::Tanh, true);
    };
    Dev f32g(opt::garbage(n), {N, C}), f32u(opt::garbage(n), {N, C});
    Dev b16g(std::vector<uint16_t>(n, 0xFFFF), DType::BF16, {N, C});
    Dev b16u(std::vector<uint16_t>(n, 0xFFFF), DType::BF16, {N, C});
    run(f32g.t, f32u.t);
    run(b16g.t, b16u.t);
    const std::vector<float> g32 = host_of(f32g), u32 = host_of(f32u);
    const std::vector<uint16_t> g16 = host16_of(b16g), u16 = host16_of(b16u);
    bool same = true;
    for (int64_t i = 0; i < n; ++i) {
      same = same && g16[i] == f32_to_bf16(g32[i]) && u16[i] == f32_to_bf16(u32[i]);
    }
    CHECK_MSG(same, op == 0 ? "swiglu bf16 gradients" : "geglu bf16 gradients");
    CHECK_THROWS_CODE(cuda::swiglu_backward(ctx(), b16g.t, Tensor{}, gdy.t, gx.t, gu.t, false),
                      code::kDType);
  }
  // relu and rope likewise (T5's wi, Llama's q_proj / k_proj have no bias).
  {
    Dev f32x(opt::garbage(n), {N, C}), b16x(std::vector<uint16_t>(n, 0xFFFF), DType::BF16, {N, C});
    Dev f32r(opt::garbage(n), {1, N, 3, 32});
    Dev b16r(std::vector<uint16_t>(n, 0xFFFF), DType::BF16, {1, N, 3, 32});
    const Tensor dy4 = Tensor::contiguous(gdy.t.data, DType::F32, {1, N, 3, 32});
    cuda::relu_backward(ctx(), f32x.t, gdy.t, gx.t, true);
    cuda::relu_backward(ctx(), b16x.t, gdy.t, gx.t, true);
    cuda::rope_backward(ctx(), f32r.t, dy4, gpos.ptr<int32_t>(), N, 10000.f, true);
    cuda::rope_backward(ctx(), b16r.t, dy4, gpos.ptr<int32_t>(), N, 10000.f, true);
    const std::vector<float> x32 = host_of(f32x), r32 = host_of(f32r);
    const std::vector<uint16_t> x16 = host16_of(b16x), r16 = host16_of(b16r);
    bool same = true;
    for (int64_t i = 0; i < n; ++i) {
      same = same && x16[i] == f32_to_bf16(x32[i]) && r16[i] == f32_to_bf16(r32[i]);
    }
    CHECK_MSG(same, "relu / rope bf16 gradients");
  }
  // A block per row (C > 1024) takes the other reduction path.
  const int64_t Cw = 1500;
  std::vector<float> xw = random_vector(2 * Cw, 26), dyw = random_vector(2 * Cw, 27);
  std::vector<float> ww = random_vector(Cw, 28, 0.5f, 1.5f);
  Dev gxw(xw, {2, Cw}), gdyw(dyw, {2, Cw}), gww(ww, {Cw}), gyw(std::vector<float>(2 * Cw), {2, Cw});
  Dev fw(opt::garbage(2 * Cw), {2, Cw}), zw(std::vector<float>(2 * Cw, 0.f), {2, Cw});
  Dev gmw(std::vector<float>(2), {2}), grw(std::vector<float>(2), {2});
  for (bool o : {true, false}) {
    const Tensor d = o ? fw.t : zw.t;
    cuda::layernorm_forward(ctx(), gyw.t, gmw.t, grw.t, gxw.t, gww.t, Tensor{}, 1e-5f);
    cuda::layernorm_backward(ctx(), d, Tensor{}, Tensor{}, gdyw.t, gxw.t, gww.t, gmw.t, grw.t, o);
  }
  CHECK(opt::same_values(host_of(fw), host_of(zw)));
}

// ---- dropout, cast, elementwise: exact --------------------------------------------------------

CUDA_TEST(cuda_dropout_matches_cpu_mask_bit_for_bit) {
  const int64_t n = 10007;  // not a multiple of 4: block boundaries inside Philox blocks
  std::vector<float> x = random_vector(n, 13), dy = random_vector(n, 14);
  std::vector<float> y(n), dx(n, 0.f);
  const uint64_t seed = 0x1234abcdULL, offset = 6;
  dropout_forward(view(y, {n}), view(x, {n}), 0.1f, seed, offset);
  dropout_backward(view(dx, {n}), view(dy, {n}), 0.1f, seed, offset);
  Dev gx(x, {n}), gdy(dy, {n}), gy(std::vector<float>(n), {n}), gdx(std::vector<float>(n, 0.f), {n});
  cuda::dropout_forward(ctx(), gy.t, gx.t, 0.1f, seed, offset);
  cuda::dropout_backward(ctx(), gdx.t, gdy.t, 0.1f, seed, offset);
  CHECK(opt::bit_equal(host_of(gy), y));
  CHECK(opt::bit_equal(host_of(gdx), dx));
  CHECK_THROWS_CODE(cuda::dropout_forward(ctx(), gy.t, gx.t, 1.0f, seed, 0), code::kArgument);
  // The seed read from device memory (DropoutSeed::on_device; the value beside it is ignored):
  // the same mask. A kernel that took the value would drop about 10% of the elements otherwise.
  Dev on_device(std::vector<uint64_t>{seed}, DType::F32, {2});
  DropoutSeed key(~seed);
  key.on_device = on_device.ptr<uint64_t>();
  Dev gy2(std::vector<float>(n), {n}), gdx2(std::vector<float>(n, 0.f), {n});
  cuda::dropout_forward(ctx(), gy2.t, gx.t, 0.1f, key, offset);
  cuda::dropout_backward(ctx(), gdx2.t, gdy.t, 0.1f, key, offset);
  CHECK(opt::bit_equal(host_of(gy2), y));
  CHECK(opt::bit_equal(host_of(gdx2), dx));
}

// residual + dropout(branch) in one pass gives the pair's bits (dropout_forward, then
// add_forward): p 0.1, 0.5 and 0, the seed as a value and read from device memory; the
// residual and the branch stay as they were. A branch of another shape is S2S_SHAPE.
CUDA_TEST(cuda_dropout_add_is_the_pair_bit_for_bit) {
  const int64_t n = 10007;
  std::vector<float> x = random_vector(n, 16), r = random_vector(n, 17, -3, 3);
  Dev gx(x, {n}), gr(r, {n}), gdrop(std::vector<float>(n), {n});
  Dev on_device(std::vector<uint64_t>{0x5eedULL}, DType::F32, {2});
  for (const float p : {0.1f, 0.5f, 0.0f}) {
    for (const bool device_seed : {false, true}) {
      DropoutSeed key(device_seed ? ~0x5eedULL : 0x5eedULL);
      if (device_seed) key.on_device = on_device.ptr<uint64_t>();
      const uint64_t offset = 11;
      Dev want(opt::garbage(size_t(n)), {n}), got(opt::garbage(size_t(n)), {n});
      cuda::dropout_forward(ctx(), gdrop.t, gx.t, p, key, offset);
      cuda::add_forward(ctx(), want.t, gr.t, gdrop.t);
      cuda::dropout_add_forward(ctx(), got.t, gr.t, gx.t, p, key, offset);
      const std::string tag = "p " + std::to_string(p) + (device_seed ? " device seed" : "");
      CHECK_MSG(opt::bit_equal(host_of(got), host_of(want)), tag);
      CHECK_MSG(opt::bit_equal(host_of(gr), r) && opt::bit_equal(host_of(gx), x),
                tag + ": an input changed");
    }
  }
  Dev short_branch(std::vector<float>(size_t(n - 1)), {n - 1}), out(std::vector<float>(n), {n});
  CHECK_THROWS_CODE(cuda::dropout_add_forward(ctx(), out.t, gr.t, short_branch.t, 0.1f,
                                              DropoutSeed(1), 0),
                    code::kShape);
}

CUDA_TEST(cuda_cast_bits) {
  const int64_t n = 4099;
  std::vector<float> x = random_vector(n, 15, -70000, 70000);
  x[0] = NAN; x[1] = INFINITY; x[2] = -0.0f; x[3] = 1e-30f; x[4] = 65520.f; x[5] = 5.96e-8f;
  Dev gx(x, {n});
  for (DType to : {DType::BF16, DType::F16}) {
    std::vector<uint16_t> cpu(n), back_cpu(n);
    cast_forward(opt::view16(cpu, to, {n}), view(x, {n}));
    Dev gy(std::vector<uint16_t>(n), to, {n});
    cuda::cast_forward(ctx(), gy.t, gx.t);
    CHECK_MSG(host16_of(gy) == cpu, std::string("cast to ") + dtype_name(to));
    // Back to f32 (exact) and the backward (accumulate into f32).
    std::vector<float> wide(n), acc(n, 1.f);
    cast_forward(view(wide, {n}), opt::view16(cpu, to, {n}));
    cast_backward(view(acc, {n}), opt::view16(cpu, to, {n}));
    Dev gw(std::vector<float>(n), {n}), gacc(std::vector<float>(n, 1.f), {n});
    cuda::cast_forward(ctx(), gw.t, gy.t);
    cuda::cast_backward(ctx(), gacc.t, gy.t);
    CHECK(opt::bit_equal(host_of(gw), wide));
    CHECK(opt::bit_equal(host_of(gacc), acc));
  }
}

CUDA_TEST(cuda_elementwise) {
  const int64_t rows = 17, cols = 96;
  std::vector<float> a = random_vector(rows * cols, 16), b = random_vector(rows * cols, 17);
  Dev ga(a, {rows, cols}), gb(b, {rows, cols}), go(std::vector<float>(rows * cols), {rows, cols});
  std::vector<float> o(rows * cols);
  add_forward(view(o, {rows, cols}), view(a, {rows, cols}), view(b, {rows, cols}));
  cuda::add_forward(ctx(), go.t, ga.t, gb.t);
  CHECK(opt::bit_equal(host_of(go), o));
  std::vector<float> d = a;
  axpy(view(d, {rows, cols}), 0.37f, view(b, {rows, cols}));
  cuda::axpy(ctx(), ga.t, 0.37f, gb.t);
  CHECK(opt::bit_equal(host_of(ga), d));
  scale_forward(view(o, {rows, cols}), view(b, {rows, cols}), -1.5f);
  cuda::scale_forward(ctx(), go.t, gb.t, -1.5f);
  CHECK(opt::bit_equal(host_of(go), o));
  std::vector<float> cols_cpu(rows * 32), back(rows * cols, 0.f);
  copy_columns(cols_cpu.data(), b.data(), rows, cols, 32, 32);
  add_to_columns(back.data(), cols_cpu.data(), rows, cols, 64, 32);
  Dev gc(std::vector<float>(rows * 32), {rows, 32}), gback(std::vector<float>(rows * cols, 0.f), {rows, cols});
  cuda::copy_columns(ctx(), gc.ptr<float>(), gb.ptr<float>(), rows, cols, 32, 32);
  cuda::add_to_columns(ctx(), gback.ptr<float>(), gc.ptr<float>(), rows, cols, 64, 32);
  CHECK(opt::bit_equal(host_of(gc), cols_cpu));
  CHECK(opt::bit_equal(host_of(gback), back));
}

// ---- embedding ------------------------------------------------------------------------------

CUDA_TEST(cuda_embedding) {
  const int64_t B = 3, T = 7, C = 40, V = 50, P = 16;
  std::vector<float> wte = random_vector(V * C, 18), wpe = random_vector(P * C, 19);
  std::vector<int32_t> ids(B * T), pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = int32_t((i * 7 + 3) % V);
    pos[i] = int32_t((i * 5) % P);
  }
  ids[4] = ids[9];  // repeated ids: the scatter-add sums them
  std::vector<float> dy = random_vector(B * T * C, 20);
  Dev gwte(wte, {V, C}), gwpe(wpe, {P, C}), gdy(dy, {B, T, C});
  Dev gids(ids, DType::F32, {B * T}), gpos(pos, DType::F32, {B * T});  // raw int32 storage
  for (int explicit_pos = 0; explicit_pos < 2; ++explicit_pos) {
    const int32_t* hp = explicit_pos ? pos.data() : nullptr;
    const int32_t* dp = explicit_pos ? gpos.ptr<int32_t>() : nullptr;
    const int64_t np = explicit_pos ? B * T : 0;
    std::vector<float> out(B * T * C), dte(V * C, 0.f), dpe(P * C, 0.f);
    embedding_forward(view(out, {B, T, C}), view(wte, {V, C}), view(wpe, {P, C}), ids.data(), B * T, hp, np);
    embedding_backward(view(dte, {V, C}), view(dpe, {P, C}), view(dy, {B, T, C}), ids.data(), B * T, hp, np);
    Dev gout(std::vector<float>(B * T * C), {B, T, C});
    cuda::embedding_forward(ctx(), gout.t, gwte.t, gwpe.t, gids.ptr<int32_t>(), B * T, dp, np);
    CHECK(opt::bit_equal(host_of(gout), out));
    // Each row's owner adds its tokens in (b, t) order like the CPU: the same bits.
    Dev gdte(std::vector<float>(V * C, 0.f), {V, C}), gdpe(std::vector<float>(P * C, 0.f), {P, C});
    cuda::embedding_backward(ctx(), gdte.t, gdpe.t, gdy.t, gids.ptr<int32_t>(), B * T, dp, np);
    CHECK(opt::bit_equal(host_of(gdte), dte));
    CHECK(opt::bit_equal(host_of(gdpe), dpe));
  }
  // bf16 table: rows widened exactly.
  std::vector<uint16_t> wte16(V * C);
  cast_forward(opt::view16(wte16, DType::BF16, {V, C}), view(wte, {V, C}));
  std::vector<float> out16(B * T * C);
  embedding_forward(view(out16, {B, T, C}), opt::view16(wte16, DType::BF16, {V, C}), none(), ids.data(), B * T);
  Dev gwte16(wte16, DType::BF16, {V, C}), gout16(std::vector<float>(B * T * C), {B, T, C});
  cuda::embedding_forward(ctx(), gout16.t, gwte16.t, Tensor{}, gids.ptr<int32_t>(), B * T);
  CHECK(opt::bit_equal(host_of(gout16), out16));
  // An id out of range: reported at the next synchronize, as S2S_ARGUMENT naming the index.
  std::vector<int32_t> bad = ids;
  bad[5] = int32_t(V + 3);
  Dev gbad(bad, DType::F32, {B * T});
  cuda::embedding_forward(ctx(), gout16.t, gwte16.t, Tensor{}, gbad.ptr<int32_t>(), B * T);
  try {
    ctx().synchronize();
    CHECK_MSG(false, "expected the bad id to be reported");
  } catch (const Error& e) {
    CHECK(e.code() == code::kArgument);
    CHECK_MSG(std::string(e.what()).find("ids[5] = 53") != std::string::npos, e.what());
  }
  ctx().synchronize();  // the report was cleared
}

// The backward at a size where its structure shows: several chunks of tokens per owner block,
// more rows than owners (rows r and r + 256 share one), two channel slabs (the second partial),
// runs of one row (padding at the row ends) and a row recurring across chunks, gradients
// accumulating onto existing values. The CPU's bits for both tables; a bad id is reported and
// skipped, the rest unchanged.
CUDA_TEST(cuda_embedding_backward_owners) {
  const int64_t B = 4, T = 100, C = 600, V = 300, P = 128, n = B * T;
  std::vector<int32_t> ids(n), pos(n);
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = i % T >= 80 ? 0 : int32_t((i * 37 + 11) % V);  // rows end in padding (id 0)
    pos[i] = int32_t((i * 3) % P);
  }
  ids[7] = ids[300] = 256;  // shares owner 0 with the padding row
  std::vector<float> dy = random_vector(n * C, 21);
  std::vector<float> te0 = random_vector(V * C, 22), pe0 = random_vector(P * C, 23);
  Dev gdy(dy, {B, T, C}), gids(ids, DType::F32, {n}), gpos(pos, DType::F32, {n});
  for (int explicit_pos = 0; explicit_pos < 2; ++explicit_pos) {
    const int32_t* hp = explicit_pos ? pos.data() : nullptr;
    const int32_t* dp = explicit_pos ? gpos.ptr<int32_t>() : nullptr;
    const int64_t np = explicit_pos ? n : 0;
    std::vector<float> dte = te0, dpe = pe0;
    embedding_backward(view(dte, {V, C}), view(dpe, {P, C}), view(dy, {B, T, C}), ids.data(), n,
                       hp, np);
    Dev gdte(te0, {V, C}), gdpe(pe0, {P, C});
    cuda::embedding_backward(ctx(), gdte.t, gdpe.t, gdy.t, gids.ptr<int32_t>(), n, dp, np);
    CHECK(opt::bit_equal(host_of(gdte), dte));
    CHECK(opt::bit_equal(host_of(gdpe), dpe));
  }
  std::vector<int32_t> bad = ids;
  bad[150] = -4;
  Dev gbad(bad, DType::F32, {n}), gdte(te0, {V, C});
  std::vector<float> dte = te0;
  for (int64_t i = 0; i < n; ++i) {
    if (i == 150) continue;
    for (int64_t c = 0; c < C; ++c) dte[bad[i] * C + c] += dy[i * C + c];
  }
  cuda::embedding_backward(ctx(), gdte.t, Tensor{}, gdy.t, gbad.ptr<int32_t>(), n, nullptr, 0);
  CHECK_THROWS_CODE(ctx().synchronize(), code::kArgument);
  CHECK(opt::bit_equal(host_of(gdte), dte));
}

// ---- linear (cuBLASLt) ----------------------------------------------------------------------

static void check_linear(DType wt, WeightLayout layout, double tol_f, double tol_b) {
  const int64_t N = 37, IC = 96, OC = 80;
  std::vector<float> x = random_vector(N * IC, 21), w = random_vector(OC * IC, 22, -0.2f, 0.2f);
  std::vector<float> bias = random_vector(OC, 23), dy = random_vector(N * OC, 24);
  const int64_t w0 = layout == WeightLayout::OutIn ? OC : IC, w1 = layout == WeightLayout::OutIn ? IC : OC;
  std::vector<uint16_t> w16(OC * IC);
  Tensor wcpu = view(w, {w0, w1});
  if (wt != DType::F32) {
    cast_forward(opt::view16(w16, wt, {w0, w1}), view(w, {w0, w1}));
    wcpu = opt::view16(w16, wt, {w0, w1});
  }
  std::vector<float> y(N * OC), dx(N * IC, 0.f), dw(OC * IC, 0.f), db(OC, 0.f);
  if (wt == DType::F16) {
    // No CPU f16 GEMM: the reference is the f32 op on f16-rounded weights and inputs (what the
    // tensor-core path computes), with its own rounding of x and dy below.
    std::vector<float> wr(OC * IC), xr(N * IC), dyr(N * OC);
    cast_forward(view(wr, {w0, w1}), opt::view16(w16, wt, {w0, w1}));
    std::vector<uint16_t> t16(std::max(N * IC, N * OC));
    cast_forward(opt::view16(t16, wt, {N, IC}), view(x, {N, IC}));
    cast_forward(view(xr, {N, IC}), opt::view16(t16, wt, {N, IC}));
    cast_forward(opt::view16(t16, wt, {N, OC}), view(dy, {N, OC}));
    cast_forward(view(dyr, {N, OC}), opt::view16(t16, wt, {N, OC}));
    linear_forward_reference(view(y, {N, OC}), view(xr, {N, IC}), view(wr, {w0, w1}), view(bias, {OC}), layout);
    linear_backward_reference(view(dx, {N, IC}), view(dw, {w0, w1}), none(), view(dyr, {N, OC}),
                              view(xr, {N, IC}), view(wr, {w0, w1}), layout);
    linear_backward_reference(none(), none(), view(db, {OC}), view(dy, {N, OC}), view(xr, {N, IC}),
                              view(wr, {w0, w1}), layout);
  } else {
    linear_forward(view(y, {N, OC}), view(x, {N, IC}), wcpu, view(bias, {OC}), layout);
    linear_backward(view(dx, {N, IC}), view(dw, {w0, w1}), view(db, {OC}), view(dy, {N, OC}),
                    view(x, {N, IC}), wcpu, layout);
  }
  Dev gx(x, {N, IC}), gb(bias, {OC}), gdy(dy, {N, OC});
  Dev gw = wt == DType::F32 ? Dev(w, {w0, w1}) : Dev(w16, wt, {w0, w1});
  Dev gy(std::vector<float>(N * OC), {N, OC}), gdx(std::vector<float>(N * IC, 0.f), {N, IC});
  Dev gdw(std::vector<float>(OC * IC, 0.f), {w0, w1}), gdb(std::vector<float>(OC, 0.f), {OC});
  cuda::linear_forward(ctx(), gy.t, gx.t, gw.t, gb.t, layout);
  cuda::linear_backward(ctx(), gdx.t, gdw.t, gdb.t, gdy.t, gx.t, gw.t, layout);
  const std::string tag = std::string(dtype_name(wt)) + (layout == WeightLayout::OutIn ? " OutIn" : " InOut");
  expect_close(host_of(gy), y, tol_f, ("linear out " + tag).c_str());
  expect_close(host_of(gdx), dx, tol_b, ("linear dinp " + tag).c_str());
  expect_close(host_of(gdw), dw, tol_b, ("linear dweight " + tag).c_str());
  expect_close(host_of(gdb), db, 1e-5, ("linear dbias " + tag).c_str());
}
CUDA_TEST(cuda_linear_fp32_bf16_fp16) {
  ctx().set_allow_tf32(false);
  for (WeightLayout l : {WeightLayout::OutIn, WeightLayout::InOut}) {
    check_linear(DType::F32, l, 1e-5, 1e-4);
    check_linear(DType::BF16, l, 2e-3, 2e-3);
    check_linear(DType::F16, l, 2e-3, 2e-3);
  }
}

// linear_residual_forward: residual + linear(inp) in one GEMM (the residual as cuBLASLt's C
// input) against the linear's own output added on the host, within the rounding of the
// additions' order: f32 (TF32 off), bf16 and f16 weights, both layouts, with and without a
// bias, out apart from the residual (which stays as it was) and in place on it. Where cuBLASLt
// does not take C beside D (ContextOptions::gemm_c_input off here), the product and an add
// kernel: the pair's bits, counted by gemm_onto_through_add. A residual of another shape is
// S2S_SHAPE.
CUDA_TEST(cuda_linear_residual_is_the_linear_plus_the_residual) {
  ctx().set_allow_tf32(false);
  const int64_t N = 37, IC = 96, OC = 80;
  for (const DType wt : {DType::F32, DType::BF16, DType::F16}) {
    for (const WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
      const bool out_in = layout == WeightLayout::OutIn;
      const int64_t w0 = out_in ? OC : IC, w1 = out_in ? IC : OC;
      std::vector<float> x = random_vector(N * IC, 31), w = random_vector(OC * IC, 32);
      std::vector<float> bias = random_vector(OC, 33), r = random_vector(N * OC, 34, -4, 4);
      std::vector<uint16_t> w16(w.size());
      for (size_t i = 0; i < w16.size(); ++i) {
        w16[i] = wt == DType::BF16 ? f32_to_bf16(w[i]) : f32_to_f16(w[i]);
      }
      Dev gx(x, {N, IC}), gb(bias, {OC}), gr(r, {N, OC});
      Dev gw = wt == DType::F32 ? Dev(w, {w0, w1}) : Dev(w16, wt, {w0, w1});
      for (const bool with_bias : {true, false}) {
        const Tensor b = with_bias ? gb.t : Tensor{};
        const std::string tag = std::string(dtype_name(wt)) + (out_in ? " OutIn" : " InOut") +
                                (with_bias ? " bias" : "");
        Dev gy(opt::garbage(size_t(N * OC)), {N, OC});
        Dev gout(opt::garbage(size_t(N * OC)), {N, OC});
        cuda::linear_forward(ctx(), gy.t, gx.t, gw.t, b, layout);
        std::vector<float> want = host_of(gy);
        for (size_t i = 0; i < want.size(); ++i) want[i] += r[i];
        cuda::linear_residual_forward(ctx(), gout.t, gx.t, gw.t, b, gr.t, layout);
        expect_close(host_of(gout), want, 1e-6, (tag + ": out").c_str());
        CHECK_MSG(opt::bit_equal(host_of(gr), r), tag + ": the residual changed");
        const int64_t through_add = cuda::gemm_onto_through_add(ctx());
        ctx().set_gemm_c_input(false);
        cuda::linear_residual_forward(ctx(), gout.t, gx.t, gw.t, b, gr.t, layout);
        ctx().set_gemm_c_input(true);
        CHECK_MSG(opt::bit_equal(host_of(gout), want), tag + ": the product, then the add");
        CHECK_MSG(cuda::gemm_onto_through_add(ctx()) == through_add + 1, tag + ": not counted");
        Dev inplace(r, {N, OC});
        cuda::linear_residual_forward(ctx(), inplace.t, gx.t, gw.t, b, inplace.t, layout);
        expect_close(host_of(inplace), want, 1e-6, (tag + ": in place").c_str());
      }
    }
  }
  Dev gx(random_vector(4 * 8, 35), {4, 8}), gw(random_vector(6 * 8, 36), {6, 8});
  Dev gout(std::vector<float>(4 * 6), {4, 6}), gr(std::vector<float>(4 * 5), {4, 5});
  CHECK_THROWS_CODE(cuda::linear_residual_forward(ctx(), gout.t, gx.t, gw.t, Tensor{}, gr.t),
                    code::kShape);
}

// A bf16 dout (written rounded by cross_entropy_backward) gives the bits of the f32 dout holding
// the same values: the GEMMs see the same bf16 operands. Refused with a dbias or a non-bf16 weight.
CUDA_TEST(cuda_linear_takes_bf16_dout) {
  const int64_t N = 19, IC = 24, OC = 40;
  std::vector<float> x = random_vector(N * IC, 60), w = random_vector(OC * IC, 61);
  std::vector<float> dy = random_vector(N * OC, 62);
  std::vector<uint16_t> wh(w.size()), dyh(dy.size());
  for (size_t i = 0; i < w.size(); ++i) wh[i] = f32_to_bf16(w[i]);
  for (size_t i = 0; i < dy.size(); ++i) {
    dyh[i] = f32_to_bf16(dy[i]);
    dy[i] = bf16_to_f32(dyh[i]);
  }
  Dev gx(x, {N, IC}), gw(wh, DType::BF16, {OC, IC}), gdy(dy, {N, OC}), gdyh(dyh, DType::BF16, {N, OC});
  Dev gdx1(std::vector<float>(N * IC, 0.f), {N, IC}), gdx2(std::vector<float>(N * IC, 0.f), {N, IC});
  Dev gdw1(std::vector<float>(OC * IC, 0.f), {OC, IC}), gdw2(std::vector<float>(OC * IC, 0.f), {OC, IC});
  cuda::linear_backward(ctx(), gdx1.t, gdw1.t, none(), gdy.t, gx.t, gw.t);
  cuda::linear_backward(ctx(), gdx2.t, gdw2.t, none(), gdyh.t, gx.t, gw.t);
  CHECK(host_of(gdx1) == host_of(gdx2));
  CHECK(host_of(gdw1) == host_of(gdw2));
  Dev gdb(std::vector<float>(OC, 0.f), {OC}), gwf(w, {OC, IC});
  CHECK_THROWS_CODE(cuda::linear_backward(ctx(), gdx2.t, gdw2.t, gdb.t, gdyh.t, gx.t, gw.t),
                    code::kArgument);
  CHECK_THROWS_CODE(cuda::linear_backward(ctx(), gdx2.t, gdw2.t, none(), gdyh.t, gx.t, gwf.t),
                    code::kDType);
}

// A linear's (w0, w1) weight on the device in dtype wt (bf16 / f16: w rounded).
Dev weight_in(const std::vector<float>& w, DType wt, int64_t w0, int64_t w1) {
  if (wt == DType::F32) return Dev(w, {w0, w1});
  std::vector<uint16_t> w16(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    w16[i] = wt == DType::BF16 ? f32_to_bf16(w[i]) : f32_to_f16(w[i]);
  }
  return Dev(w16, wt, {w0, w1});
}

// `count` elements of a device buffer (a padded-row view's whole storage).
template <typename T>
std::vector<T> stored(const Dev& d, int64_t count) {
  std::vector<T> out(static_cast<size_t>(count));
  cuda::download(ctx(), out.data(), d.buf.data(), out.size() * sizeof(T));
  return out;
}
// A padded-row (rows, cols) view of a device buffer (opu::row_stride).
Tensor padded(const Dev& d, DType dt, int64_t rows, int64_t cols, int64_t ld) {
  return opt::padded_view(d.buf.data(), dt, rows, cols, ld);
}

// linear's out (forward) and dout (backward) and cross_entropy's logits and dlogits with padded
// rows (nn::linear_cross_entropy's chunks, Backend::aligned_row_stride: 97 columns laid 128
// apart, as GPT-2's 50,257 are laid 50,304 apart): the kernels give the contiguous calls' bits
// and neither read nor write the pads (NaN there would show); the GEMMs give them in the
// simulator and agree within rounding on a GPU (cuBLASLt may take another algorithm for another
// stride). The backward's rounded copy of an f32 dout (under a 16-bit weight) is laid out with
// the padded rows too.
CUDA_TEST(cuda_linear_and_cross_entropy_take_padded_rows) {
  const int64_t N = 37, IC = 48, OC = 97, ld = 128;
  const float nan = NAN;
  auto same = [](const std::vector<float>& got, const std::vector<float>& want,
                 const std::string& what) {
#if S2S_SIMT_SIM
    CHECK_MSG(opt::bit_equal(got, want), what + ": not the contiguous call's bits");
#else
    expect_close(got, want, 1e-5, what.c_str());
#endif
  };
  std::vector<float> x = random_vector(N * IC, 81), w = random_vector(OC * IC, 82, -0.3f, 0.3f);
  std::vector<float> bias = random_vector(OC, 83), dy = random_vector(N * OC, 84);
  Dev gx(x, {N, IC}), gb(bias, {OC}), gdy(dy, {N, OC});
  Dev gdyp(opt::padded_rows(dy, N, OC, ld, nan), {N * ld});
  for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
    const int64_t w0 = layout == WeightLayout::OutIn ? OC : IC;
    const int64_t w1 = layout == WeightLayout::OutIn ? IC : OC;
    for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
      const std::string tag = std::string(dtype_name(wt)) +
                              (layout == WeightLayout::OutIn ? " OutIn" : " InOut");
      const Dev gw = weight_in(w, wt, w0, w1);
      Dev gy(std::vector<float>(N * OC), {N, OC});
      Dev gyp(std::vector<float>(N * ld, nan), {N * ld});
      cuda::linear_forward(ctx(), gy.t, gx.t, gw.t, gb.t, layout);
      cuda::linear_forward(ctx(), padded(gyp, DType::F32, N, OC, ld), gx.t, gw.t, gb.t, layout);
      const std::vector<float> yp = stored<float>(gyp, N * ld);
      same(opt::unpadded_rows(yp, N, OC, ld), host_of(gy), "linear out " + tag);
      CHECK_MSG(opt::pads_untouched(yp, N, OC, ld, nan), "linear out " + tag + ": pads written");
      // f32 dout with dbias (its column-sum pass writes the GEMMs' copy), without (a plain
      // pass does), and bf16 dout (read as it is).
      for (int variant = 0; variant < 3; ++variant) {
        const bool half_dout = variant == 2, with_bias = variant == 0;
        if (half_dout && wt != DType::BF16) continue;
        std::vector<uint16_t> dyh(dy.size());
        for (size_t i = 0; i < dy.size(); ++i) dyh[i] = f32_to_bf16(dy[i]);
        Dev gdyh(dyh, DType::BF16, {N, OC});
        Dev gdyhp(opt::padded_rows(dyh, N, OC, ld, uint16_t(0x7FC1)), DType::BF16, {N * ld});
        std::vector<float> got[2][3];
        for (int p = 0; p < 2; ++p) {
          Dev gdx(std::vector<float>(N * IC, nan), {N, IC});
          Dev gdw(std::vector<float>(OC * IC, 0.25f), {w0, w1});
          Dev gdb(std::vector<float>(OC, 0.5f), {OC});
          const Tensor dout = half_dout ? (p ? padded(gdyhp, DType::BF16, N, OC, ld) : gdyh.t)
                                        : (p ? padded(gdyp, DType::F32, N, OC, ld) : gdy.t);
          cuda::linear_backward(ctx(), gdx.t, gdw.t, with_bias ? gdb.t : Tensor{}, dout, gx.t,
                                gw.t, layout, /*overwrite_dinp=*/true);
          got[p][0] = host_of(gdx);
          got[p][1] = host_of(gdw);
          got[p][2] = host_of(gdb);
        }
        const std::string m = "linear backward " + tag +
                              (half_dout ? " bf16 dout" : with_bias ? " with dbias" : "");
        same(got[1][0], got[0][0], m + " dinp");
        same(got[1][1], got[0][1], m + " dweight");
        CHECK_MSG(opt::bit_equal(got[1][2], got[0][2]), m + " dbias: not the same bits");
      }
    }
  }
  // cross_entropy: the rows with and without their gradient, the forward, the backward (f32
  // overwritten and accumulated, bf16), on padded logits into padded dlogits.
  const std::vector<float> logits = random_vector(N * OC, 85, -8, 8);
  std::vector<int32_t> labels(N);
  for (int64_t i = 0; i < N; ++i) labels[i] = int32_t((i * 29 + 3) % OC);
  labels[4] = -100;
  Dev glab(labels, DType::F32, {N}), gl(logits, {N, OC});
  Dev glp(opt::padded_rows(logits, N, OC, ld, nan), {N * ld});
  const Tensor lp = padded(glp, DType::F32, N, OC, ld);
  const int32_t* labs = glab.ptr<int32_t>();
  CrossEntropyOptions o;
  Dev lse(std::vector<float>(N), {N}), lse_p(std::vector<float>(N), {N});
  Dev pick(std::vector<float>(N), {N}), pick_p(std::vector<float>(N), {N});
  cuda::cross_entropy_rows(ctx(), lse.t, pick.t, gl.t, labs, N, o.ignore_index);
  cuda::cross_entropy_rows(ctx(), lse_p.t, pick_p.t, lp, labs, N, o.ignore_index);
  CHECK_MSG(opt::bit_equal(host_of(lse_p), host_of(lse)) &&
                opt::bit_equal(host_of(pick_p), host_of(pick)),
            "cross_entropy rows on padded logits");
  const CrossEntropyResult a = cuda::cross_entropy_forward(ctx(), lse.t, gl.t, labs, N, o);
  const CrossEntropyResult b = cuda::cross_entropy_forward(ctx(), lse_p.t, lp, labs, N, o);
  CHECK_MSG(a.loss == b.loss && a.count == b.count, "cross_entropy forward on padded logits");
  for (int mode = 0; mode < 4; ++mode) {  // overwrite, accumulate, bf16, bf16 with the rows
    const bool bf16 = mode >= 2, overwrite = mode != 1;
    const std::string m = std::string("cross_entropy dlogits ") +
                          (mode == 0 ? "f32" : mode == 1 ? "f32 accumulated" :
                           mode == 2 ? "bf16" : "bf16 with the rows");
    const DType dt = bf16 ? DType::BF16 : DType::F32;
    auto grad_buffers = [&](bool pad) {
      return bf16 ? Dev(std::vector<uint16_t>(size_t(N * (pad ? ld : OC)), 0x7FC1), dt,
                        {N * (pad ? ld : OC)})
                  : Dev(std::vector<float>(N * (pad ? ld : OC), pad ? nan : 0.5f),
                        {N * (pad ? ld : OC)});
    };
    Dev g = grad_buffers(false), gp = grad_buffers(true);
    if (!bf16) {  // the accumulated gradient's start, 0.5 in the padded rows too
      cuda::upload(ctx(), gp.buf.data(), opt::padded_rows(std::vector<float>(N * OC, 0.5f), N,
                                                          OC, ld, nan).data(),
                   size_t(N * ld) * sizeof(float));
    }
    const Tensor dl = Tensor::contiguous(g.buf.data(), dt, {N, OC});
    const Tensor dlp = padded(gp, dt, N, OC, ld);
    if (mode == 3) {
      const cuda::CrossEntropyGradient ga{dl, 0.6f, LossReduction::Sum};
      const cuda::CrossEntropyGradient gpa{dlp, 0.6f, LossReduction::Sum};
      cuda::cross_entropy_rows(ctx(), lse.t, pick.t, gl.t, labs, N, o.ignore_index, &ga);
      cuda::cross_entropy_rows(ctx(), lse_p.t, pick_p.t, lp, labs, N, o.ignore_index, &gpa);
    } else {
      cuda::cross_entropy_backward(ctx(), dl, gl.t, lse.t, labs, N, 0.6f, o, overwrite);
      cuda::cross_entropy_backward(ctx(), dlp, lp, lse_p.t, labs, N, 0.6f, o, overwrite);
    }
    if (bf16) {
      const std::vector<uint16_t> hp = stored<uint16_t>(gp, N * ld);
      CHECK_MSG(opt::unpadded_rows(hp, N, OC, ld) == stored<uint16_t>(g, N * OC), m);
      CHECK_MSG(opt::pads_untouched(hp, N, OC, ld, uint16_t(0x7FC1)), m + ": pads written");
    } else {
      const std::vector<float> hp = stored<float>(gp, N * ld);
      CHECK_MSG(opt::bit_equal(opt::unpadded_rows(hp, N, OC, ld), stored<float>(g, N * OC)), m);
      CHECK_MSG(opt::pads_untouched(hp, N, OC, ld, nan), m + ": pads written");
    }
  }
}

// linear_forward with a 16-bit out from a slice of a wider weight (nn::linear_split's parts: rows
// of an OutIn weight, columns of an InOut one, with its bias's slice): each value the whole
// product's f32 value rounded to nearest even, as the split rounds it, through cuBLASLt's
// epilogue (16-bit D, f32 bias) and through the f32 scratch where the epilogue is off. Bit for
// bit in the simulator; on a GPU cuBLASLt may sum a slice in another order, so within a 16-bit
// rounding step there. A 16-bit out of another dtype than the weight's is refused.
CUDA_TEST(cuda_linear_writes_16bit_parts_of_a_wider_weight) {
  const int64_t N = 29, IC = 40, P = 24, OC = 3 * P;
  const std::vector<float> x = random_vector(N * IC, 91), w = random_vector(OC * IC, 92);
  const std::vector<float> bias = random_vector(OC, 93);
  Dev gx(x, {N, IC}), gb(bias, {OC});
  for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
    const bool out_in = layout == WeightLayout::OutIn;
    const int64_t w0 = out_in ? OC : IC, w1 = out_in ? IC : OC;
    for (DType wt : {DType::BF16, DType::F16}) {
      const Dev gw = weight_in(w, wt, w0, w1);
      Dev whole(std::vector<float>(N * OC), {N, OC});
      cuda::linear_forward(ctx(), whole.t, gx.t, gw.t, gb.t, layout);
      const std::vector<float> full = host_of(whole);
      for (const bool epilogue : {true, false}) {
        ctx().set_gemm_bias_epilogue(epilogue);
        for (int64_t p = 0; p < 3; ++p) {
          Tensor slice = gw.t;
          slice.data = static_cast<uint16_t*>(gw.buf.data()) + (out_in ? p * P * IC : p * P);
          slice.shape[out_in ? 0 : 1] = P;
          const Tensor bslice = Tensor::contiguous(gb.ptr<float>() + p * P, DType::F32, {P});
          Dev part(std::vector<uint16_t>(size_t(N * P), 0x7FC1), wt, {N, P});
          cuda::linear_forward(ctx(), part.t, gx.t, slice, bslice, layout);
          const std::vector<uint16_t> got = host16_of(part);
          std::vector<float> got32(got.size()), want32(got.size());
          std::vector<uint16_t> want(got.size());
          for (int64_t r = 0; r < N; ++r) {
            for (int64_t c = 0; c < P; ++c) {
              const float v = full[size_t(r * OC + p * P + c)];
              const size_t i = size_t(r * P + c);
              want[i] = wt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
              got32[i] = wt == DType::BF16 ? bf16_to_f32(got[i]) : f16_to_f32(got[i]);
              want32[i] = wt == DType::BF16 ? bf16_to_f32(want[i]) : f16_to_f32(want[i]);
            }
          }
          const std::string tag = std::string(dtype_name(wt)) + (out_in ? " OutIn" : " InOut") +
                                  " part " + std::to_string(p) +
                                  (epilogue ? "" : ", bias by the kernel");
#if S2S_SIMT_SIM
          CHECK_MSG(got == want, tag + ": not the whole product's values rounded");
#else
          expect_close(got32, want32, 1e-2, tag.c_str());
#endif
        }
      }
      ctx().set_gemm_bias_epilogue(true);
    }
  }
  const Dev gw = weight_in(w, DType::BF16, OC, IC);
  Dev f16_out(std::vector<uint16_t>(size_t(N * OC)), DType::F16, {N, OC});
  CHECK_THROWS_CODE(cuda::linear_forward(ctx(), f16_out.t, gx.t, gw.t, gb.t, WeightLayout::OutIn),
                    code::kDType);
}

// linear_gelu_backward (nn::linear_gelu's fused backward) gives the bits of gelu_backward into
// an f32 buffer followed by linear_backward: every weight dtype and layout, both GELUs, each
// gradient wanted or not (the pre-activation's own, LoRA's input, too), accumulated onto
// existing values or overwriting dinp.
CUDA_TEST(cuda_linear_gelu_backward_is_the_unfused_pair) {
  const int64_t N = 45, IC = 24, OC = 72;
  std::vector<float> x = random_vector(N * IC, 70), w = random_vector(OC * IC, 71, -0.3f, 0.3f);
  std::vector<float> pre = random_vector(N * OC, 72, -3.f, 3.f), dact = random_vector(N * OC, 73);
  std::vector<float> dx0 = random_vector(N * IC, 74), dw0 = random_vector(OC * IC, 75);
  std::vector<float> db0 = random_vector(OC, 76);
  for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
    for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
      const int64_t w0 = layout == WeightLayout::OutIn ? OC : IC;
      const int64_t w1 = layout == WeightLayout::OutIn ? IC : OC;
      Dev gw = weight_in(w, wt, w0, w1);
      Dev gx(x, {N, IC}), gpre(pre, {N, OC}), gdact(dact, {N, OC});
      for (GeluApprox a : {GeluApprox::Tanh, GeluApprox::None}) {
        for (int want = 1; want < 16; ++want) {  // bits: dinp, dweight, dbias, dpre
          for (bool overwrite : {false, true}) {
            Dev fdx(dx0, {N, IC}), fdw(dw0, {w0, w1}), fdb(db0, {OC});
            Dev udx(dx0, {N, IC}), udw(dw0, {w0, w1}), udb(db0, {OC});
            Dev dpre(std::vector<float>(N * OC), {N, OC});
            Dev fdpre(std::vector<float>(N * OC, NAN), {N, OC});
            auto pick = [&](const Dev& d, int bit) { return (want & bit) ? d.t : none(); };
            cuda::linear_gelu_backward(ctx(), pick(fdx, 1), pick(fdw, 2), pick(fdb, 4),
                                       pick(fdpre, 8), gdact.t, gpre.t, gx.t, gw.t, layout, a,
                                       overwrite);
            cuda::gelu_backward(ctx(), dpre.t, gdact.t, gpre.t, a, /*overwrite=*/true);
            cuda::linear_backward(ctx(), pick(udx, 1), pick(udw, 2), pick(udb, 4), dpre.t, gx.t,
                                  gw.t, layout, overwrite);
            const std::string tag = std::string(dtype_name(wt)) +
                                    (layout == WeightLayout::OutIn ? " OutIn" : " InOut") +
                                    (a == GeluApprox::Tanh ? " tanh" : " erf") + " want " +
                                    std::to_string(want) + (overwrite ? " overwrite" : "");
            CHECK_MSG(opt::bit_equal(host_of(fdx), host_of(udx)), "dinp " + tag);
            CHECK_MSG(opt::bit_equal(host_of(fdw), host_of(udw)), "dweight " + tag);
            CHECK_MSG(opt::bit_equal(host_of(fdb), host_of(udb)), "dbias " + tag);
            if (want & 8) CHECK_MSG(opt::bit_equal(host_of(fdpre), host_of(dpre)), "dpre " + tag);
          }
        }
      }
    }
  }
  Dev gw(w, {OC, IC}), gx(x, {N, IC}), gpre(pre, {N, OC}), gdx(dx0, {N, IC});
  Dev short_dact(std::vector<float>((N - 1) * OC), {N - 1, OC});
  CHECK_THROWS_CODE(cuda::linear_gelu_backward(ctx(), gdx.t, none(), none(), none(), short_dact.t,
                                               gpre.t, gx.t, gw.t, WeightLayout::OutIn,
                                               GeluApprox::Tanh),
                    code::kShape);
  Dev short_dpre(std::vector<float>((N - 1) * OC), {N - 1, OC}), gdact(dact, {N, OC});
  CHECK_THROWS_CODE(cuda::linear_gelu_backward(ctx(), gdx.t, none(), none(), short_dpre.t,
                                               gdact.t, gpre.t, gx.t, gw.t, WeightLayout::OutIn,
                                               GeluApprox::Tanh),
                    code::kShape);
}

// linear_split_backward reads the parts' gradients in place; split_last's backward assembles
// them into one f32 dout (zeros for a part without a gradient) for linear_backward. Same bits:
// every weight dtype, both layouts, every subset of the outputs, each part missing in turn.
CUDA_TEST(cuda_linear_split_backward_is_the_unfused_pair) {
  const int64_t N = 45, IC = 24;
  const std::vector<int64_t> widths = {24, 16, 32};
  const int64_t OC = 72;
  std::vector<float> x = random_vector(N * IC, 90), w = random_vector(OC * IC, 91, -0.3f, 0.3f);
  std::vector<float> dx0 = random_vector(N * IC, 94), dw0 = random_vector(OC * IC, 95);
  std::vector<float> db0 = random_vector(OC, 96);
  std::vector<std::vector<float>> part_grads;
  for (size_t p = 0; p < widths.size(); ++p) {
    part_grads.push_back(random_vector(N * widths[p], 97 + p));
  }
  for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
    for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
      const int64_t w0 = layout == WeightLayout::OutIn ? OC : IC;
      const int64_t w1 = layout == WeightLayout::OutIn ? IC : OC;
      Dev gw = weight_in(w, wt, w0, w1);
      Dev gx(x, {N, IC});
      for (int missing = -1; missing < int(widths.size()); ++missing) {
        // The unfused pair's dout: the parts side by side, zeros where one is missing.
        std::vector<float> dout(size_t(N * OC), 0.f);
        std::vector<Dev> parts;
        std::vector<Tensor> dparts;
        int64_t c0 = 0;
        for (size_t p = 0; p < widths.size(); ++p) {
          parts.emplace_back(part_grads[p], std::initializer_list<int64_t>{N, widths[p]});
          dparts.push_back(int(p) == missing ? none() : parts.back().t);
          for (int64_t r = 0; int(p) != missing && r < N; ++r) {
            for (int64_t c = 0; c < widths[p]; ++c) {
              dout[size_t(r * OC + c0 + c)] = part_grads[p][size_t(r * widths[p] + c)];
            }
          }
          c0 += widths[p];
        }
        Dev gdout(dout, {N, OC});
        for (int want = 1; want < 8; ++want) {  // bits: dinp, dweight, dbias
          for (bool overwrite : {false, true}) {
            Dev fdx(dx0, {N, IC}), fdw(dw0, {w0, w1}), fdb(db0, {OC});
            Dev udx(dx0, {N, IC}), udw(dw0, {w0, w1}), udb(db0, {OC});
            auto pick = [&](const Dev& d, int bit) { return (want & bit) ? d.t : none(); };
            cuda::linear_split_backward(ctx(), pick(fdx, 1), pick(fdw, 2), pick(fdb, 4), dparts,
                                        widths, gx.t, gw.t, layout, overwrite);
            cuda::linear_backward(ctx(), pick(udx, 1), pick(udw, 2), pick(udb, 4), gdout.t, gx.t,
                                  gw.t, layout, overwrite);
            const std::string tag = std::string(dtype_name(wt)) +
                                    (layout == WeightLayout::OutIn ? " OutIn" : " InOut") +
                                    " missing " + std::to_string(missing) + " want " +
                                    std::to_string(want) + (overwrite ? " overwrite" : "");
            CHECK_MSG(opt::bit_equal(host_of(fdx), host_of(udx)), "dinp " + tag);
            CHECK_MSG(opt::bit_equal(host_of(fdw), host_of(udw)), "dweight " + tag);
            CHECK_MSG(opt::bit_equal(host_of(fdb), host_of(udb)), "dbias " + tag);
          }
        }
      }
    }
  }
  Dev gw(w, {OC, IC}), gx(x, {N, IC}), gdx(dx0, {N, IC});
  Dev p0(part_grads[0], {N, widths[0]}), short_part(std::vector<float>((N - 1) * 16), {N - 1, 16});
  // Rows that disagree, widths that do not sum to the weight's out_features, no part at all.
  CHECK_THROWS_CODE(cuda::linear_split_backward(ctx(), gdx.t, none(), none(),
                                                {p0.t, short_part.t, none()}, widths, gx.t, gw.t,
                                                WeightLayout::OutIn),
                    code::kShape);
  CHECK_THROWS_CODE(cuda::linear_split_backward(ctx(), gdx.t, none(), none(), {p0.t, none()},
                                                {24, 40 + 1}, gx.t, gw.t, WeightLayout::OutIn),
                    code::kShape);
  CHECK_THROWS_CODE(cuda::linear_split_backward(ctx(), gdx.t, none(), none(), {none(), none()},
                                                {24, 48}, gx.t, gw.t, WeightLayout::OutIn),
                    code::kArgument);
}

CUDA_TEST(cuda_gemm_tf32_option) {
  // TF32 keeps 10 mantissa bits: ~1e-3 relative on unit-scale data, a clear difference from fp32.
  const int64_t M = 64, N = 64, K = 256;
  std::vector<float> a = random_vector(M * K, 25), b = random_vector(K * N, 26), c(M * N);
  gemm_f32_reference(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, c.data(), N);
  Dev ga(a, {M, K}), gb(b, {K, N}), gc(std::vector<float>(M * N), {M, N});
  ctx().set_allow_tf32(true);
  cuda::gemm(ctx(), false, false, M, N, K, 1.f, ga.buf.data(), K, gb.buf.data(), N, DType::F32, 0.f,
             gc.ptr<float>(), N);
  const double err_tf32 = max_normalized_error(host_of(gc).data(), c.data(), c.size());
  ctx().set_allow_tf32(false);
  cuda::gemm(ctx(), false, false, M, N, K, 1.f, ga.buf.data(), K, gb.buf.data(), N, DType::F32, 0.f,
             gc.ptr<float>(), N);
  const double err_fp32 = max_normalized_error(host_of(gc).data(), c.data(), c.size());
  CHECK_ERR(err_fp32, 1e-5, "gemm fp32");
  CHECK_ERR(err_tf32, 5e-2, "gemm tf32");
  CHECK(err_tf32 > 10 * err_fp32);  // the option reached cuBLASLt: inputs were rounded to TF32
  std::printf("    gemm error vs double reference: fp32 %.2e, tf32 %.2e\n", err_fp32, err_tf32);
}

// cuda::gemm's mapping of row-major operands onto cuBLASLt's column-major ones, against the
// double reference on the operands as the GEMM sees them (rounded to bf16/f16): every transpose
// combination, padded row strides (the padding of C untouched), beta 0 (C write-only: it starts
// as NaN) and 1, with and without a bias (epilogue on and off), and every operand 16 bytes past
// an allocation's start after the aligned call of the same shape (a second plan: the first one's
// algorithm may assume 256-byte alignment).
CUDA_TEST(cuda_gemm_layouts_against_reference) {
  ctx().set_allow_tf32(false);
  const int64_t M = 37, N = 45, K = 70;
  int failures = 0;
  // Host values as device bytes in dtype t, `front` spare bytes first.
  auto device_bytes = [](const std::vector<float>& host, DType t, size_t front) {
    const size_t esize = t == DType::F32 ? 4 : 2;
    std::vector<uint8_t> bytes(front + host.size() * esize, 0xFF);
    for (size_t i = 0; i < host.size(); ++i) {
      if (t == DType::F32) {
        std::memcpy(&bytes[front + i * 4], &host[i], 4);
      } else {
        const uint16_t h = t == DType::BF16 ? f32_to_bf16(host[i]) : f32_to_f16(host[i]);
        std::memcpy(&bytes[front + i * 2], &h, 2);
      }
    }
    return Dev(bytes, DType::BF16, {int64_t(bytes.size() / 2)});  // a byte buffer, typed by the call
  };
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t a_rows = ta ? K : M, lda = (ta ? M : K) + 3;
        const int64_t b_rows = tb ? N : K, ldb = (tb ? K : N) + 2;
        const int64_t ldc = N + 5;
        std::vector<float> a = random_vector(a_rows * lda, 40 + ta), b = random_vector(b_rows * ldb, 42 + tb);
        for (float& v : a) v = t == DType::BF16 ? bf16_to_f32(f32_to_bf16(v)) : t == DType::F16 ? f16_to_f32(f32_to_f16(v)) : v;
        for (float& v : b) v = t == DType::BF16 ? bf16_to_f32(f32_to_bf16(v)) : t == DType::F16 ? f16_to_f32(f32_to_f16(v)) : v;
        const std::vector<float> c0 = random_vector(M * ldc, 44), bias = random_vector(N, 45);
        for (size_t front : {size_t(0), size_t(16)}) {
          Dev ga = device_bytes(a, t, front), gb = device_bytes(b, t, front);
          Dev gbias = device_bytes(bias, DType::F32, front);
          for (float beta : {0.f, 1.f}) {
            for (int bias_mode = 0; bias_mode < 3; ++bias_mode) {  // none, epilogue, kernel
              std::vector<float> want(c0), c_start(c0);
              for (int64_t i = 0; i < M; ++i) {
                for (int64_t j = 0; j < N && beta == 0.f; ++j) {
                  want[i * ldc + j] = 0.f;
                  c_start[i * ldc + j] = std::nanf("");
                }
              }
              gemm_f32_reference(ta, tb, M, N, K, 0.5f, a.data(), lda, b.data(), ldb, beta,
                                 want.data(), ldc);
              for (int64_t i = 0; i < M && bias_mode > 0; ++i) {
                for (int64_t j = 0; j < N; ++j) want[i * ldc + j] += bias[j];
              }
              Dev gc = device_bytes(c_start, DType::F32, front);
              ctx().set_gemm_bias_epilogue(bias_mode != 2);
              cuda::gemm(ctx(), ta, tb, M, N, K, 0.5f, ga.ptr<uint8_t>() + front, lda,
                         gb.ptr<uint8_t>() + front, ldb, t, beta,
                         reinterpret_cast<float*>(gc.ptr<uint8_t>() + front), ldc,
                         bias_mode > 0 ? reinterpret_cast<const float*>(gbias.ptr<uint8_t>() + front)
                                       : nullptr);
              ctx().set_gemm_bias_epilogue(true);
              std::vector<float> got(c0.size());
              cuda::download(ctx(), got.data(), gc.ptr<uint8_t>() + front, got.size() * sizeof(float));
              double err = 0;
              bool padding_kept = true;
              for (int64_t i = 0; i < M; ++i) {
                for (int64_t j = 0; j < ldc; ++j) {
                  const float w = want[i * ldc + j], v = got[i * ldc + j];
                  if (j >= N) {
                    padding_kept = padding_kept && std::memcmp(&v, &w, 4) == 0;
                  } else if (std::isnan(v)) {
                    err = 1e30;
                  } else {
                    err = std::max(err, std::abs(double(v) - w) / std::max(1.0, std::abs(double(w))));
                  }
                }
              }
              if ((err > 1e-5 || !padding_kept) && ++failures <= 5) {
                std::printf("    %s ta=%d tb=%d front=%zu beta=%g bias=%d: error %.2e, padding %s\n",
                            dtype_name(t), ta, tb, front, beta, bias_mode, err,
                            padding_kept ? "kept" : "overwritten");
              }
            }
          }
        }
      }
    }
  }
  CHECK(failures == 0);
}

// ---- attention ------------------------------------------------------------------------------

struct AttnCase {
  int64_t B, Tq, Tk, Hq, Hkv, D;
  bool causal, bias, mask;
  std::optional<float> scale;
  float dropout_p = 0.f;  // > 0: dropout on the probabilities, the same (seed, offset) on both
  // The GPU reads the seed from device memory (DropoutSeed::on_device), given a wrong value.
  bool seed_on_device = false;
};

// products BF16 / F16: the tensor-core kernels (attention_mma.cu). q, k, v and dout are rounded
// to that type first, so the CPU (fp32 products) sees the GPU's operands and the difference is
// the rounding of P and dS inside the kernels (test_attention_mma_sim.cpp measured ~1.5e-3 for
// bf16 and ~3e-4 for f16 in the simulator; the tolerances below leave room for the hardware's
// accumulation order).
static void check_attention(const AttnCase& c, uint64_t seed, DType products = DType::F32) {
  const int64_t nq = c.B * c.Tq * c.Hq * c.D, nk = c.B * c.Tk * c.Hkv * c.D;
  std::vector<float> q = random_vector(nq, seed), k = random_vector(nk, seed + 1);
  std::vector<float> v = random_vector(nk, seed + 2), dout = random_vector(nq, seed + 3);
  if (products != DType::F32) {
    for (std::vector<float>* x : {&q, &k, &v, &dout}) {
      for (float& e : *x) {
        e = products == DType::BF16 ? cuda::bf16_bits_to_f32(cuda::f32_to_bf16_bits(e))
                                    : cuda::f16_bits_to_f32(cuda::f32_to_f16_bits(e));
      }
    }
  }
  const double tol_out = products == DType::BF16 ? 1e-2 : products == DType::F16 ? 2e-3 : 1e-5;
  const double tol_grad = products == DType::BF16 ? 1e-2 : products == DType::F16 ? 2e-3 : 1e-4;
  const double tol_lse = products == DType::BF16 ? 2e-2 : products == DType::F16 ? 4e-3 : 1e-5;
  std::vector<float> bias = c.bias ? random_vector(c.Hq * c.Tq * c.Tk, seed + 4) : std::vector<float>{};
  std::vector<uint8_t> mask;
  if (c.mask) {
    mask.assign(c.B * c.Tk, 1);
    for (int64_t j = 0; j < 5 && j < c.Tk; ++j) mask[(c.B - 1) * c.Tk + c.Tk - 1 - j] = 0;  // padding
    if (c.B > 1) for (int64_t j = 0; j < c.Tk; ++j) mask[j] = 0;  // a fully masked batch row
  }
  AttentionOptions o;
  o.causal = c.causal;
  o.scale = c.scale;
  o.dropout_p = c.dropout_p;
  o.dropout_seed = 0xD50Full * seed;
  o.dropout_offset = 4 * seed + 1;  // not a multiple of 4: Philox blocks straddle rows
  o.products = products;
  const Tensor bias_cpu = c.bias ? view(bias, {c.Hq, c.Tq, c.Tk}) : none();
  std::vector<float> out(nq), lse(c.B * c.Hq * c.Tq), dq(nq, 0.f), dk(nk, 0.f), dv(nk, 0.f);
  std::vector<float> db(c.bias ? c.Hq * c.Tq * c.Tk : 0, 0.f);
  attention_forward(view(out, {c.B, c.Tq, c.Hq, c.D}), view(lse, {c.B, c.Hq, c.Tq}),
                    view(q, {c.B, c.Tq, c.Hq, c.D}), view(k, {c.B, c.Tk, c.Hkv, c.D}),
                    view(v, {c.B, c.Tk, c.Hkv, c.D}), bias_cpu, c.mask ? mask.data() : nullptr,
                    c.mask ? c.B * c.Tk : 0, o);
  attention_backward(view(dq, {c.B, c.Tq, c.Hq, c.D}), view(dk, {c.B, c.Tk, c.Hkv, c.D}),
                     view(dv, {c.B, c.Tk, c.Hkv, c.D}),
                     c.bias ? view(db, {c.Hq, c.Tq, c.Tk}) : none(), view(dout, {c.B, c.Tq, c.Hq, c.D}),
                     view(q, {c.B, c.Tq, c.Hq, c.D}), view(k, {c.B, c.Tk, c.Hkv, c.D}),
                     view(v, {c.B, c.Tk, c.Hkv, c.D}), view(out, {c.B, c.Tq, c.Hq, c.D}),
                     view(lse, {c.B, c.Hq, c.Tq}), bias_cpu, c.mask ? mask.data() : nullptr,
                     c.mask ? c.B * c.Tk : 0, o);
  Dev gq(q, {c.B, c.Tq, c.Hq, c.D}), gk(k, {c.B, c.Tk, c.Hkv, c.D}), gv(v, {c.B, c.Tk, c.Hkv, c.D});
  Dev gdout(dout, {c.B, c.Tq, c.Hq, c.D});
  Dev gbias(c.bias ? bias : std::vector<float>{0.f}, {c.bias ? c.Hq * c.Tq * c.Tk : 1});
  if (c.bias) gbias.t = Tensor::contiguous(gbias.buf.data(), DType::F32, {c.Hq, c.Tq, c.Tk});
  Dev gmask(c.mask ? mask : std::vector<uint8_t>{1}, DType::F32, {1});
  Dev gout(std::vector<float>(nq), {c.B, c.Tq, c.Hq, c.D}), glse(std::vector<float>(lse.size()), {c.B, c.Hq, c.Tq});
  const Tensor bias_gpu = c.bias ? gbias.t : Tensor{};
  const uint8_t* mask_gpu = c.mask ? gmask.ptr<uint8_t>() : nullptr;
  Dev gseed(std::vector<uint64_t>{o.dropout_seed.value}, DType::F32, {2});
  if (c.seed_on_device) {
    o.dropout_seed.value = ~o.dropout_seed.value;
    o.dropout_seed.on_device = gseed.ptr<uint64_t>();
  }
  cuda::attention_forward(ctx(), gout.t, glse.t, gq.t, gk.t, gv.t, bias_gpu, mask_gpu,
                          c.mask ? c.B * c.Tk : 0, o);
  char what[192];
  std::snprintf(what, sizeof what, "attention B%ld Tq%ld Tk%ld Hq%ld Hkv%ld D%ld%s%s%s dropout %g%s %s",
                long(c.B), long(c.Tq), long(c.Tk), long(c.Hq), long(c.Hkv), long(c.D),
                c.causal ? " causal" : "", c.bias ? " bias" : "", c.mask ? " mask" : "",
                double(c.dropout_p), c.seed_on_device ? " (seed on device)" : "",
                dtype_name(products));
  expect_close(host_of(gout), out, tol_out, (std::string(what) + " out").c_str());
  const std::vector<float> glse_h = host_of(glse);
  bool lse_ok = true;  // -inf rows must match exactly; others within tolerance
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lse[i]) != std::isinf(glse_h[i])) lse_ok = false;
    else if (!std::isinf(lse[i]) && std::fabs(lse[i] - glse_h[i]) > tol_lse * std::fmax(1.f, std::fabs(lse[i]))) lse_ok = false;
  }
  CHECK_MSG(lse_ok, std::string(what) + " lse");
  std::vector<float> run1[4];
  // rep 1: the same bits again; rep 2: dq, dk, dv overwritten from NaN (fresh gradients).
  for (int rep = 0; rep < 3; ++rep) {
    const bool overwrite = rep == 2;
    auto start = [&](size_t n) { return overwrite ? opt::garbage(n) : std::vector<float>(n, 0.f); };
    Dev gdq(start(nq), {c.B, c.Tq, c.Hq, c.D});
    Dev gdk(start(nk), {c.B, c.Tk, c.Hkv, c.D}), gdv(start(nk), {c.B, c.Tk, c.Hkv, c.D});
    Dev gdb(std::vector<float>(std::max<size_t>(db.size(), 1), 0.f), {int64_t(std::max<size_t>(db.size(), 1))});
    if (c.bias) gdb.t = Tensor::contiguous(gdb.buf.data(), DType::F32, {c.Hq, c.Tq, c.Tk});
    cuda::attention_backward(ctx(), gdq.t, gdk.t, gdv.t, c.bias ? gdb.t : Tensor{}, gdout.t, gq.t,
                             gk.t, gv.t, gout.t, glse.t, bias_gpu, mask_gpu,
                             c.mask ? c.B * c.Tk : 0, o, overwrite);
    std::vector<float> r[4] = {host_of(gdq), host_of(gdk), host_of(gdv), c.bias ? host_of(gdb) : std::vector<float>{}};
    if (rep == 0) {
      expect_close(r[0], dq, tol_grad, (std::string(what) + " dq").c_str());
      expect_close(r[1], dk, tol_grad, (std::string(what) + " dk").c_str());
      expect_close(r[2], dv, tol_grad, (std::string(what) + " dv").c_str());
      if (c.bias) expect_close(r[3], db, tol_grad, (std::string(what) + " dbias").c_str());
      for (int i = 0; i < 4; ++i) run1[i] = r[i];
    } else if (!overwrite) {
      for (int i = 0; i < 4; ++i) CHECK_MSG(opt::bit_equal(r[i], run1[i]), std::string(what) + " backward is deterministic");
    } else {
      for (int i = 0; i < 3; ++i) CHECK_MSG(opt::same_values(r[i], run1[i]), std::string(what) + " overwrite");
      CHECK_MSG(opt::bit_equal(r[3], run1[3]), std::string(what) + " dbias with overwrite");
    }
  }
}

CUDA_TEST(cuda_attention_against_cpu) {
  check_attention({2, 70, 70, 4, 2, 64, true, false, false, std::nullopt}, 30);   // GPT/Llama: causal, GQA
  check_attention({2, 45, 45, 3, 3, 64, false, true, true, 1.0f}, 40);            // T5 encoder: bias, padding
  check_attention({2, 33, 50, 2, 1, 80, true, false, true, std::nullopt}, 50);    // KV-cache alignment, D = 80
  check_attention({1, 50, 20, 2, 2, 32, true, true, false, 0.3f}, 60);            // Tq > Tk: empty rows
  check_attention({2, 17, 29, 4, 4, 128, false, true, false, std::nullopt}, 70);  // D = 128, cross-attention
  check_attention({1, 9, 9, 2, 1, 256, true, false, false, std::nullopt}, 80);    // D = 256 (largest)
}

// Dropout on the probabilities: the GPU regenerates the CPU op's mask (ops/dropout_mask.h) in
// the forward and both backward passes; a mask differing in one element would show as an error
// of the order of a probability, far above these tolerances.
CUDA_TEST(cuda_attention_dropout_against_cpu) {
  check_attention({2, 70, 70, 4, 2, 64, true, false, false, std::nullopt, 0.1f}, 31);   // causal, GQA
  check_attention({2, 45, 45, 3, 3, 64, false, true, true, 1.0f, 0.1f}, 41);            // T5: bias, padding
  check_attention({2, 33, 50, 2, 1, 80, true, false, true, std::nullopt, 0.5f}, 51);    // Tk > Tq, D = 80
  check_attention({1, 50, 20, 2, 2, 32, true, true, false, 0.3f, 0.2f}, 61);            // Tq > Tk: empty rows
  check_attention({2, 17, 29, 4, 4, 128, false, true, false, std::nullopt, 0.3f}, 71);  // cross-attention
  check_attention({1, 300, 300, 2, 1, 64, true, false, true, std::nullopt, 0.1f}, 91);  // several tiles
  check_attention({2, 45, 45, 3, 3, 64, false, true, true, 1.0f, 0.1f, true}, 42);      // seed on device
}

// The tensor-core kernels (head dims 32, 64, 96, 128; bf16 and f16 operands): the shapes above
// where the head dim has a kernel, dropout included; D = 80 and 256 fall back to the fp32
// kernels (checked to stay within the fp32 tolerance although products asks for bf16).
CUDA_TEST(cuda_attention_tensor_cores_against_cpu) {
  for (DType p : {DType::BF16, DType::F16}) {
    check_attention({2, 70, 70, 4, 2, 64, true, false, false, std::nullopt}, 130, p);
    check_attention({2, 45, 45, 3, 3, 64, false, true, true, 1.0f}, 140, p);
    check_attention({1, 50, 20, 2, 2, 32, true, true, false, 0.3f}, 160, p);
    check_attention({2, 17, 29, 4, 4, 128, false, true, false, std::nullopt}, 170, p);
    check_attention({1, 40, 40, 2, 1, 96, true, false, false, std::nullopt}, 175, p);
    check_attention({2, 70, 70, 4, 2, 64, true, false, false, std::nullopt, 0.1f}, 131, p);
    check_attention({1, 300, 300, 2, 1, 64, true, false, true, std::nullopt, 0.1f}, 191, p);
    check_attention({2, 70, 70, 4, 2, 64, true, false, false, std::nullopt, 0.1f, true}, 132, p);
    // Bidirectional over whole key tiles, batch row 0 fully masked: only the tiles the mask
    // keeps whole may skip the mask test (attention_mma.cu's kept_key_tiles).
    check_attention({2, 130, 130, 2, 2, 64, false, false, true, std::nullopt}, 195, p);
  }
}

CUDA_TEST(cuda_attention_rejects_dropout_p_outside_0_1) {
  const int64_t B = 1, T = 8, H = 1, D = 32;
  std::vector<float> x = random_vector(B * T * H * D, 92);
  Dev gx(x, {B, T, H, D}), gout(std::vector<float>(x.size()), {B, T, H, D}), glse(std::vector<float>(T), {B, H, T});
  for (float bad : {1.0f, -0.5f, NAN}) {
    AttentionOptions o;
    o.dropout_p = bad;
    CHECK_THROWS_CODE(cuda::attention_forward(ctx(), gout.t, glse.t, gx.t, gx.t, gx.t, Tensor{}, nullptr, 0, o),
                      code::kArgument);
    CHECK_THROWS_CODE(cuda::attention_backward(ctx(), gout.t, Tensor{}, Tensor{}, Tensor{}, gx.t, gx.t, gx.t,
                                               gx.t, gx.t, glse.t, Tensor{}, nullptr, 0, o),
                      code::kArgument);
  }
}

// q, k or v in 16 bits: the tensor-core kernels take them (the bits they would round fp32 inputs
// to: the same output as from those inputs), and only they: fp32 products, a head dim without a
// tensor-core kernel or the other 16-bit type is S2S_DTYPE before anything runs.
CUDA_TEST(cuda_attention_takes_16bit_inputs_only_for_tensor_cores) {
  const int64_t B = 1, T = 20, H = 2;
  for (const int64_t D : {int64_t(32), int64_t(8)}) {
    const size_t n = size_t(B * T * H * D);
    std::vector<float> x = random_vector(n, 93);
    std::vector<uint16_t> x16(n);
    for (size_t i = 0; i < n; ++i) x16[i] = f32_to_bf16(x[i]);
    Dev gx(x, {B, T, H, D}), gx16(x16, DType::BF16, {B, T, H, D});
    Dev gout(std::vector<float>(n), {B, T, H, D}), gout16(std::vector<float>(n), {B, T, H, D});
    Dev glse(std::vector<float>(size_t(B * H * T)), {B, H, T});
    AttentionOptions o;
    o.causal = true;
    o.products = DType::BF16;
    if (D == 32) {
      cuda::attention_forward(ctx(), gout.t, glse.t, gx.t, gx.t, gx.t, Tensor{}, nullptr, 0, o);
      cuda::attention_forward(ctx(), gout16.t, glse.t, gx16.t, gx.t, gx16.t, Tensor{}, nullptr, 0,
                              o);
      CHECK(opt::bit_equal(host_of(gout16), host_of(gout)));
      o.products = DType::F16;  // bf16 bits are not f16 values
      CHECK_THROWS_CODE(cuda::attention_forward(ctx(), gout.t, glse.t, gx16.t, gx.t, gx.t,
                                                Tensor{}, nullptr, 0, o),
                        code::kDType);
      o.products = DType::F32;
    }
    // D = 8 (no tensor-core kernel) with bf16 products, and D = 32 with fp32 products.
    CHECK_THROWS_CODE(cuda::attention_forward(ctx(), gout.t, glse.t, gx.t, gx16.t, gx.t, Tensor{},
                                              nullptr, 0, o),
                      code::kDType);
  }
}

// out in 16 bits where the tensor-core kernels run: the forward writes each fp32 value rounded
// to the products' dtype (the bits an f32 out would round to), and the backward's Di reads those
// values: exactly the gradients of an f32 out holding them. Causal GQA over several key tiles
// (the last one partial), dropout in one case; fp32 products, a head dim without a tensor-core
// kernel or the other 16-bit type is S2S_DTYPE.
CUDA_TEST(cuda_attention_16bit_output_for_tensor_cores) {
  const int64_t B = 2, T = 70, Hq = 4, Hkv = 2;
  for (const int64_t D : {int64_t(32), int64_t(64)}) {
    for (const DType products : {DType::BF16, DType::F16}) {
      const bool bf16 = products == DType::BF16;
      const std::string tag = std::string(bf16 ? "bf16" : "f16") + " D=" + std::to_string(D);
      const size_t nq = size_t(B * T * Hq * D), nk = size_t(B * T * Hkv * D);
      Dev gq(random_vector(nq, 94), {B, T, Hq, D}), gk(random_vector(nk, 95), {B, T, Hkv, D});
      Dev gv(random_vector(nk, 96), {B, T, Hkv, D}), gdy(random_vector(nq, 97), {B, T, Hq, D});
      Dev gout(std::vector<float>(nq), {B, T, Hq, D});
      Dev gout16(std::vector<uint16_t>(nq, 0xFFFF), products, {B, T, Hq, D});
      Dev glse(std::vector<float>(size_t(B * Hq * T)), {B, Hq, T});
      AttentionOptions o;
      o.causal = true;
      o.products = products;
      o.dropout_p = D == 64 ? 0.1f : 0.0f;
      o.dropout_seed.value = 7;
      cuda::attention_forward(ctx(), gout.t, glse.t, gq.t, gk.t, gv.t, Tensor{}, nullptr, 0, o);
      const std::vector<float> lse = host_of(glse);
      cuda::attention_forward(ctx(), gout16.t, glse.t, gq.t, gk.t, gv.t, Tensor{}, nullptr, 0, o);
      CHECK_MSG(opt::bit_equal(host_of(glse), lse), tag + ": lse");
      const std::vector<float> out = host_of(gout);
      const std::vector<uint16_t> out16 = host16_of(gout16);
      std::vector<float> widened(nq);
      bool rounded = true;
      for (size_t i = 0; i < nq; ++i) {
        rounded &= out16[i] == (bf16 ? f32_to_bf16(out[i]) : f32_to_f16(out[i]));
        widened[i] = bf16 ? bf16_to_f32(out16[i]) : f16_to_f32(out16[i]);
      }
      CHECK_MSG(rounded, tag + ": out16 is the f32 out rounded");
      // The backward from the 16-bit out, and from an f32 out holding the same values.
      Dev gwide(widened, {B, T, Hq, D});
      std::vector<float> grads[2][3];
      for (int from16 = 0; from16 < 2; ++from16) {
        Dev gdq(opt::garbage(nq), {B, T, Hq, D}), gdk(opt::garbage(nk), {B, T, Hkv, D});
        Dev gdv(opt::garbage(nk), {B, T, Hkv, D});
        cuda::attention_backward(ctx(), gdq.t, gdk.t, gdv.t, Tensor{}, gdy.t, gq.t, gk.t, gv.t,
                                 from16 ? gout16.t : gwide.t, glse.t, Tensor{}, nullptr, 0, o,
                                 /*overwrite=*/true);
        grads[from16][0] = host_of(gdq);
        grads[from16][1] = host_of(gdk);
        grads[from16][2] = host_of(gdv);
      }
      for (int i = 0; i < 3; ++i) {
        const char* name[3] = {"dq", "dk", "dv"};
        CHECK_MSG(opt::bit_equal(grads[1][i], grads[0][i]), tag + ": " + name[i]);
      }
      // The other 16-bit type, and fp32 products, refuse the 16-bit out.
      o.products = bf16 ? DType::F16 : DType::BF16;
      CHECK_THROWS_CODE(cuda::attention_forward(ctx(), gout16.t, glse.t, gq.t, gk.t, gv.t,
                                                Tensor{}, nullptr, 0, o),
                        code::kDType);
      o.products = DType::F32;
      CHECK_THROWS_CODE(cuda::attention_backward(ctx(), gq.t, Tensor{}, Tensor{}, Tensor{}, gdy.t,
                                                 gq.t, gk.t, gv.t, gout16.t, glse.t, Tensor{},
                                                 nullptr, 0, o),
                        code::kDType);
    }
  }
  // D = 8: no tensor-core kernel.
  const int64_t D = 8;
  const size_t n = size_t(B * T * Hq * D);
  Dev gx(random_vector(n, 98), {B, T, Hq, D});
  Dev glse(std::vector<float>(size_t(B * Hq * T)), {B, Hq, T});
  Dev gout16(std::vector<uint16_t>(n), DType::BF16, {B, T, Hq, D});
  AttentionOptions o;
  o.products = DType::BF16;
  CHECK_THROWS_CODE(cuda::attention_forward(ctx(), gout16.t, glse.t, gx.t, gx.t, gx.t, Tensor{},
                                            nullptr, 0, o),
                    code::kDType);
}

CUDA_TEST(cuda_attention_bad_mask_value) {
  // T = 64: one whole key tile, which the bad value must keep out of the tensor-core kernels'
  // untested score loops (mma_key_tile_kept), or nothing would read and report it.
  const int64_t B = 1, T = 64, H = 1, D = 32;
  std::vector<float> x = random_vector(B * T * H * D, 90);
  std::vector<uint8_t> mask(B * T, 1);
  mask[3] = 2;
  Dev gx(x, {B, T, H, D}), gout(std::vector<float>(x.size()), {B, T, H, D}), glse(std::vector<float>(T), {B, H, T});
  Dev gmask(mask, DType::F32, {2});
  // The fp32 kernels and the tensor-core ones (bf16 products) both report it.
  for (const DType products : {DType::F32, DType::BF16}) {
    AttentionOptions o;
    o.products = products;
    cuda::attention_forward(ctx(), gout.t, glse.t, gx.t, gx.t, gx.t, Tensor{},
                            gmask.ptr<uint8_t>(), B * T, o);
    CHECK_THROWS_CODE(ctx().synchronize(), code::kArgument);
  }
}

// ---- attention over a KV cache (decoding) ---------------------------------------------------

struct CachedCase {
  int64_t R, Tq, Hq, Hkv, D, S, Tc;
  bool causal, bias;
  int64_t masked_keys = 0;  // with bias: keys [0, masked_keys) get -inf (whole splits masked)
  bool empty_last_row = false;  // the last row attends to nothing (zeros)
};

static void check_attention_cached(const CachedCase& c, uint64_t seed) {
  const int64_t nq = c.R * c.Tq * c.Hq * c.D, nc = c.S * c.Tc * c.Hkv * c.D;
  std::vector<float> q = random_vector(nq, seed), k = random_vector(nc, seed + 1);
  std::vector<float> v = random_vector(nc, seed + 2);
  // Rows in permuted slots (beam search), left padding in row 0, a prompt of several positions
  // in the last row (prefill into the cache) when Tq > 1.
  std::vector<int32_t> slot(c.R), begin(c.R), end(c.R);
  for (int64_t r = 0; r < c.R; ++r) {
    slot[r] = int32_t((r * 3 + 1) % c.S);
    begin[r] = r == 0 ? 3 : 0;
    end[r] = int32_t(c.Tc - r);
  }
  if (c.empty_last_row) begin[c.R - 1] = end[c.R - 1];
  const int64_t Tb = c.Tc;
  std::vector<float> bias = c.bias ? random_vector(c.Hq * c.Tq * Tb, seed + 3) : std::vector<float>{};
  for (size_t e = 0; e < bias.size(); ++e)
    if (int64_t(e) % Tb < c.masked_keys) bias[e] = -INFINITY;
  AttentionOptions o;
  o.causal = c.causal;
  if (c.bias) o.scale = 1.0f;  // T5's unscaled scores
  std::vector<float> out(nq);
  attention_cached_forward(view(out, {c.R, c.Tq, c.Hq, c.D}), view(q, {c.R, c.Tq, c.Hq, c.D}),
                           view(k, {c.S, c.Tc, c.Hkv, c.D}), view(v, {c.S, c.Tc, c.Hkv, c.D}),
                           slot.data(), begin.data(), end.data(),
                           c.bias ? view(bias, {c.Hq, c.Tq, Tb}) : none(), o);
  Dev gq(q, {c.R, c.Tq, c.Hq, c.D}), gk(k, {c.S, c.Tc, c.Hkv, c.D}), gv(v, {c.S, c.Tc, c.Hkv, c.D});
  Dev gslot(slot, DType::F32, {c.R}), gbegin(begin, DType::F32, {c.R}), gend(end, DType::F32, {c.R});
  Dev gbias(c.bias ? bias : std::vector<float>{0.f}, {c.bias ? c.Hq * c.Tq * Tb : 1});
  if (c.bias) gbias.t = Tensor::contiguous(gbias.buf.data(), DType::F32, {c.Hq, c.Tq, Tb});
  Dev gout(std::vector<float>(nq, -7.f), {c.R, c.Tq, c.Hq, c.D});
  cuda::attention_cached_forward(ctx(), gout.t, gq.t, gk.t, gv.t, gslot.ptr<int32_t>(),
                                 gbegin.ptr<int32_t>(), gend.ptr<int32_t>(),
                                 c.bias ? gbias.t : Tensor{}, o);
  ctx().synchronize();
  char what[128];
  std::snprintf(what, sizeof what, "attention_cached R%ld Tq%ld Hq%ld Hkv%ld D%ld%s%s", long(c.R),
                long(c.Tq), long(c.Hq), long(c.Hkv), long(c.D), c.causal ? " causal" : "",
                c.bias ? " bias" : "");
  expect_close(host_of(gout), out, 1e-5, what);
}

CUDA_TEST(cuda_attention_cached_against_cpu) {
  check_attention_cached({3, 1, 4, 2, 64, 4, 40, true, false}, 210);    // decoding one token, GQA
  check_attention_cached({2, 5, 2, 2, 80, 3, 29, true, false}, 220);    // several new positions
  check_attention_cached({2, 1, 3, 3, 32, 2, 17, true, true}, 230);     // T5 decoder: bias, scale 1
  check_attention_cached({2, 4, 2, 1, 128, 2, 50, false, false}, 240);  // cross-attention shape
  check_attention_cached({1, 1, 2, 2, 256, 1, 9, true, false}, 250);    // D = 256
  // Long caches: the keys split over warps and merged (32 splits of 32 keys for 12 queries).
  check_attention_cached({1, 1, 12, 4, 64, 2, 1000, true, false}, 255);
  check_attention_cached({2, 3, 2, 2, 40, 2, 300, true, false}, 256);  // uneven, Tq > 1
  // Splits whose keys all have bias -inf, and a row with no keys: both merge as empty.
  check_attention_cached({3, 1, 2, 1, 32, 3, 200, true, true, 70, true}, 257);
}

CUDA_TEST(cuda_attention_cached_bad_slot_is_reported) {
  const int64_t D = 32, S = 2, Tc = 8;
  std::vector<float> q = random_vector(D, 260), kv = random_vector(S * Tc * D, 261);
  std::vector<int32_t> slot = {5}, begin = {0}, end = {4};
  Dev gq(q, {1, 1, 1, D}), gkv(kv, {S, Tc, 1, D}), gout(std::vector<float>(D), {1, 1, 1, D});
  Dev gslot(slot, DType::F32, {1}), gbegin(begin, DType::F32, {1}), gend(end, DType::F32, {1});
  cuda::attention_cached_forward(ctx(), gout.t, gq.t, gkv.t, gkv.t, gslot.ptr<int32_t>(),
                                 gbegin.ptr<int32_t>(), gend.ptr<int32_t>(), Tensor{}, {});
  CHECK_THROWS_CODE(ctx().synchronize(), code::kArgument);
  std::vector<int32_t> good = {1}, past_capacity = {Tc + 1};
  Dev ggood(good, DType::F32, {1}), gpast(past_capacity, DType::F32, {1});
  cuda::attention_cached_forward(ctx(), gout.t, gq.t, gkv.t, gkv.t, ggood.ptr<int32_t>(),
                                 gbegin.ptr<int32_t>(), gpast.ptr<int32_t>(), Tensor{}, {});
  CHECK_THROWS_CODE(ctx().synchronize(), code::kArgument);
  cuda::attention_cached_forward(ctx(), gout.t, gq.t, gkv.t, gkv.t, ggood.ptr<int32_t>(),
                                 gbegin.ptr<int32_t>(), gend.ptr<int32_t>(), Tensor{}, {});
  ctx().synchronize();  // the context stays usable
}

// Decoding's cache write and q, both read in place in a fused qkv row on the device: the cache
// gets the CPU op's bits (a copy), the attention its values; a bad slot or key_end is reported
// at synchronize and writes nothing.
CUDA_TEST(cuda_kv_cache_append_and_q_in_a_fused_row) {
  const int64_t R = 3, T = 2, Hq = 4, H = 2, D = 32, S = 4, Tc = 40, HD = H * D;
  const int64_t W = (Hq + 2 * H) * D, qw = Hq * D;
  std::vector<float> fused = random_vector(R * T * W, 270);
  std::vector<float> kc = random_vector(S * Tc * HD, 271), vc = random_vector(S * Tc * HD, 272);
  std::vector<int32_t> slot = {3, 0, 1}, begin = {0, 5, 0}, end = {12, 40, 2};
  auto in_row = [&](float* base, int64_t col0, int64_t heads) {
    Tensor t = Tensor::contiguous(base + col0, DType::F32, {R, T, heads, D});
    t.strides[0] = T * W;
    t.strides[1] = W;
    return t;
  };
  Dev gfused(fused, {R * T * W}), gkc(kc, {S, Tc, H, D}), gvc(vc, {S, Tc, H, D});
  Dev gslot(slot, DType::F32, {R}), gbegin(begin, DType::F32, {R}), gend(end, DType::F32, {R});
  kv_cache_append(view(kc, {S, Tc, H, D}), view(vc, {S, Tc, H, D}),
                  in_row(fused.data(), qw, H), in_row(fused.data(), qw + HD, H), slot.data(),
                  end.data());
  cuda::kv_cache_append(ctx(), gkc.t, gvc.t, in_row(gfused.ptr<float>(), qw, H),
                        in_row(gfused.ptr<float>(), qw + HD, H), gslot.ptr<int32_t>(),
                        gend.ptr<int32_t>());
  ctx().synchronize();
  CHECK(opt::bit_equal(host_of(gkc), kc));
  CHECK(opt::bit_equal(host_of(gvc), vc));
  AttentionOptions o;
  o.causal = true;
  std::vector<float> out(R * T * qw);
  attention_cached_forward(view(out, {R, T, Hq, D}), in_row(fused.data(), 0, Hq),
                           view(kc, {S, Tc, H, D}), view(vc, {S, Tc, H, D}), slot.data(),
                           begin.data(), end.data(), none(), o);
  Dev gout(std::vector<float>(out.size(), -7.f), {R, T, Hq, D});
  cuda::attention_cached_forward(ctx(), gout.t, in_row(gfused.ptr<float>(), 0, Hq), gkc.t, gvc.t,
                                 gslot.ptr<int32_t>(), gbegin.ptr<int32_t>(),
                                 gend.ptr<int32_t>(), Tensor{}, o);
  ctx().synchronize();
  expect_close(host_of(gout), out, 1e-5, "attention_cached, q in a fused row");
  for (const std::vector<int32_t>& bad_slot_end : std::vector<std::vector<int32_t>>{
           {4, 12}, {-1, 12}, {0, 41}, {0, 1}}) {  // no slot 4 / -1; past the capacity; before T
    std::vector<int32_t> s1 = {bad_slot_end[0], 0, 1}, e1 = {bad_slot_end[1], 40, 2};
    Dev gs1(s1, DType::F32, {R}), ge1(e1, DType::F32, {R});
    cuda::kv_cache_append(ctx(), gkc.t, gvc.t, in_row(gfused.ptr<float>(), qw, H),
                          in_row(gfused.ptr<float>(), qw + HD, H), gs1.ptr<int32_t>(),
                          ge1.ptr<int32_t>());
    CHECK_THROWS_CODE(ctx().synchronize(), code::kArgument);
  }
  ctx().synchronize();  // the context stays usable
}

// A 16-bit cache on the device (what decoding under bf16/f16 compute uses): the cache write
// gives the CPU op's rounded bits, and the cached attention the CPU op's values on the same
// cache, for a short cache and a long one whose keys split over warps (GQA, Tq > 1, causal).
CUDA_TEST(cuda_kv_cache_16_bit_against_cpu) {
  for (const DType dt : {DType::BF16, DType::F16}) {
    for (const int64_t Tc : {int64_t(40), int64_t(700)}) {
      const std::string tag = std::string(dtype_name(dt)) + " Tc " + std::to_string(Tc);
      const int64_t R = 3, T = 2, Hq = 4, H = 2, D = 64, S = 4, HD = H * D;
      const bool bf16 = dt == DType::BF16;
      std::vector<float> k = random_vector(R * T * HD, 280), v = random_vector(R * T * HD, 281);
      std::vector<float> q = random_vector(R * T * Hq * D, 282);
      std::vector<float> start = random_vector(S * Tc * HD, 283);
      std::vector<uint16_t> kc(start.size()), vc(start.size());
      for (size_t i = 0; i < start.size(); ++i) {
        kc[i] = bf16 ? f32_to_bf16(start[i]) : f32_to_f16(start[i]);
        vc[i] = bf16 ? f32_to_bf16(-start[i]) : f32_to_f16(-start[i]);
      }
      std::vector<int32_t> slot = {3, 0, 1}, begin = {0, 5, 0};
      std::vector<int32_t> end = {12, int32_t(Tc), int32_t(Tc / 2)};
      Dev gk(k, {R, T, H, D}), gv(v, {R, T, H, D}), gq(q, {R, T, Hq, D});
      Dev gkc(kc, dt, {S, Tc, H, D}), gvc(vc, dt, {S, Tc, H, D});
      Dev gslot(slot, DType::F32, {R}), gbegin(begin, DType::F32, {R}), gend(end, DType::F32, {R});
      kv_cache_append(opt::view16(kc, dt, {S, Tc, H, D}), opt::view16(vc, dt, {S, Tc, H, D}),
                      view(k, {R, T, H, D}), view(v, {R, T, H, D}), slot.data(), end.data());
      cuda::kv_cache_append(ctx(), gkc.t, gvc.t, gk.t, gv.t, gslot.ptr<int32_t>(),
                            gend.ptr<int32_t>());
      CHECK_MSG(host16_of(gkc) == kc && host16_of(gvc) == vc, tag + ": the cache's bits");
      AttentionOptions o;
      o.causal = true;
      std::vector<float> out(q.size());
      attention_cached_forward(view(out, {R, T, Hq, D}), view(q, {R, T, Hq, D}),
                               opt::view16(kc, dt, {S, Tc, H, D}),
                               opt::view16(vc, dt, {S, Tc, H, D}), slot.data(), begin.data(),
                               end.data(), none(), o);
      Dev gout(std::vector<float>(out.size(), -7.f), {R, T, Hq, D});
      cuda::attention_cached_forward(ctx(), gout.t, gq.t, gkc.t, gvc.t, gslot.ptr<int32_t>(),
                                     gbegin.ptr<int32_t>(), gend.ptr<int32_t>(), Tensor{}, o);
      ctx().synchronize();
      expect_close(host_of(gout), out, 1e-5, (tag + ": attention_cached").c_str());
      CHECK_THROWS_CODE(cuda::attention_cached_forward(ctx(), gout.t, gq.t, gkc.t, gk.t,
                                                       gslot.ptr<int32_t>(), gbegin.ptr<int32_t>(),
                                                       gend.ptr<int32_t>(), Tensor{}, o),
                        code::kDType);
    }
  }
}

// A captured graph runs nothing at the capture and all of it at each launch; a capture whose
// work throws is null, leaves nothing run, and the context works on (in the simulator also a
// capture that copies from the host, which a real capture refuses for pageable memory).
// Uploads go through the context's pinned ring (UploadStaging), so they never wait for the
// stream: with 1 KiB segments, 300 uploads of 200-odd bytes wrap the ring many times between
// kernels that read what was uploaded, and each arrives intact. The simulator refuses a copy
// from pinned memory an earlier copy read before the host waited past it, so a ring that wrote
// over a segment without waiting for its event fails here. An upload larger than a segment, and
// any upload while the stream is captured, goes from the caller's memory.
CUDA_TEST(cuda_uploads_are_staged_through_pinned_memory) {
  cuda::ContextOptions o;
  o.upload_segment_bytes = 1024;
  cuda::Context small(o);
  const int kUploads = 300;
  std::vector<std::vector<float>> sent;
  std::vector<cuda::DeviceBuffer> dst, doubled;
#if S2S_SIMT_SIM
  s2s::simt::queued_work() = s2s::simt::QueuedWork{};
#endif
  for (int i = 0; i < kUploads; ++i) {
    const int64_t n = 40 + i % 29;
    sent.push_back(random_vector(size_t(n), 900 + i));
    dst.emplace_back(small, sizeof(float) * size_t(n));
    doubled.emplace_back(small, sizeof(float) * size_t(n));
    cuda::upload(small, dst.back().data(), sent.back().data(), sizeof(float) * size_t(n));
    const Tensor x = Tensor::contiguous(dst.back().data(), DType::F32, {n});
    const Tensor y = Tensor::contiguous(doubled.back().data(), DType::F32, {n});
    cuda::add_forward(small, y, x, x);  // work between the uploads that reads them
  }
#if S2S_SIMT_SIM
  CHECK(s2s::simt::queued_work().uploads == kUploads);
  CHECK(s2s::simt::queued_work().pageable_uploads == 0);
#endif
  for (int i = 0; i < kUploads; ++i) {
    std::vector<float> got(sent[size_t(i)].size());
    cuda::download(small, got.data(), doubled[size_t(i)].data(), got.size() * sizeof(float));
    std::vector<float> want = sent[size_t(i)];
    for (float& v : want) v += v;
    CHECK_MSG(opt::bit_equal(got, want), "upload " + std::to_string(i));
  }
  std::vector<float> big = random_vector(1000, 999);  // 4,000 bytes: more than a segment
  cuda::DeviceBuffer big_dst(small, sizeof(float) * big.size());
  cuda::upload(small, big_dst.data(), big.data(), sizeof(float) * big.size());
  std::vector<float> back(big.size());
  cuda::download(small, back.data(), big_dst.data(), back.size() * sizeof(float));
  CHECK(opt::bit_equal(back, big));
#if S2S_SIMT_SIM
  CHECK(s2s::simt::queued_work().pageable_uploads == 1);
#endif
}

CUDA_TEST(cuda_captured_graph_replays_what_it_captured) {
  const int64_t n = 300;
  std::vector<float> zeros(n, 0.f), ones(n, 1.f);
  Dev x(zeros, {n}), one(ones, {n});
  auto filled_with = [&](float v) {
    const std::vector<float> h = host_of(x);
    return std::all_of(h.begin(), h.end(), [v](float e) { return e == v; });
  };
  std::unique_ptr<cuda::CapturedGraph> g = cuda::CapturedGraph::capture(ctx(), [&] {
    cuda::add_forward(ctx(), x.t, x.t, one.t);
    cuda::scale_forward(ctx(), x.t, x.t, 2.f);
  });
  CHECK(g != nullptr);
  CHECK(filled_with(0.f));  // recorded, not run
  g->launch();
  g->launch();
  CHECK(filled_with(6.f));  // (0 + 1) * 2, then (2 + 1) * 2
  CHECK(cuda::CapturedGraph::capture(ctx(), [&] {
          cuda::add_forward(ctx(), x.t, x.t, one.t);
          fail(code::kArgument, "test", "thrown in a capture");
        }) == nullptr);
#if S2S_SIMT_SIM
  CHECK(cuda::CapturedGraph::capture(ctx(), [&] {
          cuda::add_forward(ctx(), x.t, x.t, one.t);
          cuda::upload(ctx(), x.buf.data(), zeros.data(), sizeof(float) * size_t(n));
        }) == nullptr);
#endif
  CHECK(filled_with(6.f));  // neither failed capture ran anything
  cuda::add_forward(ctx(), x.t, x.t, one.t);
  ctx().synchronize();
  CHECK(filled_with(7.f));
  g->launch();  // the first graph still works after the failed captures
  CHECK(filled_with(16.f));
}

// ---- positions ------------------------------------------------------------------------------

CUDA_TEST(cuda_rope) {
  const int64_t B = 2, T = 11, H = 3, D = 16;
  std::vector<float> x = random_vector(B * T * H * D, 100), dy = random_vector(B * T * H * D, 101);
  std::vector<int32_t> pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) pos[i] = int32_t(i % T + (i >= T ? 3000 : 0));
  Dev gx(x, {B, T, H, D}), gdy(dy, {B, T, H, D}), gpos(pos, DType::F32, {B * T});
  for (int with_pos = 0; with_pos < 2; ++with_pos) {
    const int32_t* hp = with_pos ? pos.data() : nullptr;
    const int32_t* dp = with_pos ? gpos.ptr<int32_t>() : nullptr;
    const int64_t np = with_pos ? B * T : 0;
    std::vector<float> y(x.size()), dx(x.size(), 0.f);
    rope_forward(view(y, {B, T, H, D}), view(x, {B, T, H, D}), hp, np, 10000.f);
    rope_backward(view(dx, {B, T, H, D}), view(dy, {B, T, H, D}), hp, np, 10000.f);
    Dev gy(std::vector<float>(x.size()), {B, T, H, D}), gdx(std::vector<float>(x.size(), 0.f), {B, T, H, D});
    cuda::rope_forward(ctx(), gy.t, gx.t, dp, np, 10000.f);
    cuda::rope_backward(ctx(), gdx.t, gdy.t, dp, np, 10000.f);
    expect_close(host_of(gy), y, 1e-6, "rope forward");
    expect_close(host_of(gdx), dx, 1e-6, "rope backward");
  }
}

// Decoding's bias, the offset read from key_end on the device: the CPU op's bits for caches of
// 40 and 100 positions (bucket tables of 64 and 128), one and three new queries; a key_end
// outside [Tq, Tk] is reported at synchronize.
CUDA_TEST(cuda_t5_decoding_bias) {
  const int64_t Hq = 4, NB = 32;
  std::vector<float> table = random_vector(NB * Hq, 115);
  Dev gt(table, {NB, Hq});
  T5RelativePositionOptions o;
  o.bidirectional = false;
  o.max_distance = 20;
  for (const int64_t Tk : {40, 100}) {
    for (const int64_t Tq : {1, 3}) {
      for (const int32_t end : {int32_t(Tq), int32_t(Tk / 2), int32_t(Tk)}) {
        std::vector<float> want(Hq * Tq * Tk);
        t5_relative_position_decoding_forward(view(want, {Hq, Tq, Tk}), view(table, {NB, Hq}),
                                              &end, o);
        std::vector<int32_t> ends = {end};
        Dev gend(ends, DType::F32, {1}), gb(std::vector<float>(want.size()), {Hq, Tq, Tk});
        cuda::t5_relative_position_decoding_forward(ctx(), gb.t, gt.t, gend.ptr<int32_t>(), o);
        ctx().synchronize();
        CHECK(opt::bit_equal(host_of(gb), want));
      }
    }
  }
  std::vector<int32_t> past = {41};
  Dev gpast(past, DType::F32, {1}), gb(std::vector<float>(Hq * 40), {Hq, 1, 40});
  cuda::t5_relative_position_decoding_forward(ctx(), gb.t, gt.t, gpast.ptr<int32_t>(), o);
  CHECK_THROWS_CODE(ctx().synchronize(), code::kArgument);
}

CUDA_TEST(cuda_t5_relative_position) {
  const int64_t Hq = 4, NB = 32;
  for (bool bidirectional : {true, false}) {
    T5RelativePositionOptions o;
    o.bidirectional = bidirectional;
    o.q_offset = bidirectional ? 0 : 5;
    const int64_t Tq = 23, Tk = 31;
    std::vector<float> table = random_vector(NB * Hq, 110), g = random_vector(Hq * Tq * Tk, 111);
    std::vector<float> bias(Hq * Tq * Tk), dt(NB * Hq, 0.f);
    t5_relative_position_forward(view(bias, {Hq, Tq, Tk}), view(table, {NB, Hq}), o);
    t5_relative_position_backward(view(dt, {NB, Hq}), view(g, {Hq, Tq, Tk}), o);
    Dev gt(table, {NB, Hq}), gg(g, {Hq, Tq, Tk}), gb(std::vector<float>(bias.size()), {Hq, Tq, Tk});
    Dev gdt(std::vector<float>(NB * Hq, 0.f), {NB, Hq});
    cuda::t5_relative_position_forward(ctx(), gb.t, gt.t, o);
    cuda::t5_relative_position_backward(ctx(), gdt.t, gg.t, o);
    CHECK(opt::bit_equal(host_of(gb), bias));
    expect_close(host_of(gdt), dt, 1e-6, "t5 relative position dtable");
  }
}

// ---- loss -----------------------------------------------------------------------------------

CUDA_TEST(cuda_cross_entropy) {
  for (int64_t V : {500, 50257}) {
    const int64_t N = 13;
    std::vector<float> x = random_vector(N * V, 120, -8, 8);
    std::vector<int32_t> labels(N);
    for (int64_t i = 0; i < N; ++i) labels[i] = int32_t((i * 37) % V);
    labels[2] = -100;
    Dev gx(x, {N, V}), glab(labels, DType::F32, {N}), glse(std::vector<float>(N), {N});
    for (LossReduction red : {LossReduction::Mean, LossReduction::Sum}) {
      CrossEntropyOptions o;
      o.reduction = red;
      std::vector<float> lse(N), dx(N * V, 0.5f);
      const CrossEntropyResult r = cross_entropy_forward(view(lse, {N}), view(x, {N, V}), labels.data(), N, o);
      cross_entropy_backward(view(dx, {N, V}), view(x, {N, V}), view(lse, {N}), labels.data(), N, 0.7f, o);
      const CrossEntropyResult gr = cuda::cross_entropy_forward(ctx(), glse.t, gx.t, glab.ptr<int32_t>(), N, o);
      CHECK(gr.count == r.count);
      CHECK_ERR(std::fabs(gr.loss - r.loss) / std::fmax(1.0, std::fabs(r.loss)), 1e-5, "cross_entropy loss");
      expect_close(host_of(glse), lse, 1e-5, "cross_entropy lse");
      // The rows without their sum (queued, not waited for): the label logits copied exactly,
      // and the host's row sum the forward's.
      Dev grows_lse(std::vector<float>(N, NAN), {N}), gpicked(std::vector<float>(N, NAN), {N});
      cuda::cross_entropy_rows(ctx(), grows_lse.t, gpicked.t, gx.t, glab.ptr<int32_t>(), N,
                               o.ignore_index);
      const std::vector<float> picked = host_of(gpicked), rows_lse = host_of(grows_lse);
      CHECK(rows_lse == host_of(glse));
      for (int64_t i = 0; i < N; ++i) {
        CHECK(picked[i] == (labels[i] == o.ignore_index ? 0.f : x[i * V + labels[i]]));
      }
      if (red == LossReduction::Sum) {
        CHECK(cross_entropy_row_sum(rows_lse.data(), picked.data(), labels.data(), N,
                                    o.ignore_index) == gr.loss);
      }
      Dev gdx(std::vector<float>(N * V, 0.5f), {N, V});
      cuda::cross_entropy_backward(ctx(), gdx.t, gx.t, glse.t, glab.ptr<int32_t>(), N, 0.7f, o);
      expect_close(host_of(gdx), dx, 1e-6, "cross_entropy dlogits");
      std::vector<float> dxo(N * V, NAN);
      cross_entropy_backward(view(dxo, {N, V}), view(x, {N, V}), view(lse, {N}), labels.data(), N, 0.7f, o, true);
      Dev gdxo(std::vector<float>(N * V, NAN), {N, V});
      cuda::cross_entropy_backward(ctx(), gdxo.t, gx.t, glse.t, glab.ptr<int32_t>(), N, 0.7f, o, true);
      expect_close(host_of(gdxo), dxo, 1e-6, "cross_entropy dlogits (overwrite)");
      // bf16 dlogits (the bf16-compute head): each value the fp32 kernel's, rounded; near the
      // CPU's bf16 gradient (which rounds its own fp32 values: one bf16 step apart at most).
      std::vector<uint16_t> dxh(size_t(N * V));
      cross_entropy_backward(Tensor::contiguous(dxh.data(), DType::BF16, {N, V}), view(x, {N, V}),
                             view(lse, {N}), labels.data(), N, 0.7f, o, true);
      Dev gdxh(std::vector<uint16_t>(size_t(N * V), 0xFFFF), DType::BF16, {N, V});
      cuda::cross_entropy_backward(ctx(), gdxh.t, gx.t, glse.t, glab.ptr<int32_t>(), N, 0.7f, o, true);
      const std::vector<uint16_t> got = host16_of(gdxh);
      const std::vector<float> wide = host_of(gdxo);
      size_t unrounded = 0;
      std::vector<float> got_f(got.size()), cpu_f(got.size());
      for (size_t i = 0; i < got.size(); ++i) {
        unrounded += got[i] != f32_to_bf16(wide[i]);
        got_f[i] = bf16_to_f32(got[i]);
        cpu_f[i] = bf16_to_f32(dxh[i]);
      }
      CHECK(unrounded == 0);
      expect_close(got_f, cpu_f, 4e-3, "cross_entropy dlogits (bf16)");
      CHECK_THROWS_CODE(cuda::cross_entropy_backward(ctx(), gdxh.t, gx.t, glse.t, glab.ptr<int32_t>(),
                                                     N, 0.7f, o, false),
                        code::kArgument);
    }
    std::vector<int32_t> bad = labels;
    bad[4] = int32_t(V);
    Dev gbad(bad, DType::F32, {N});
    CHECK_THROWS_CODE(cuda::cross_entropy_forward(ctx(), glse.t, gx.t, gbad.ptr<int32_t>(), N), code::kArgument);
  }
}

// The gradient written with the loss (a seed known before the forward: the rows kernel writes
// each row's dlogits right after its lse) has the bits of the forward and then the backward
// (overwrite), f32 and bf16, Mean and Sum, for rows a warp, a block of 256 and of 1024 threads
// take (V = 500, 5000, 50257), ignored rows, and a Mean with no counted row (zeros); the rows
// variant (the chunked loss) likewise with a Sum's scale.
CUDA_TEST(cuda_cross_entropy_with_its_gradient_is_the_two_calls) {
  const int64_t N = 13;
  for (int64_t V : {500, 5000, 50257}) {
    const std::vector<float> x = random_vector(N * V, 121, -8, 8);
    std::vector<int32_t> labels(N), ignored(N, -100);
    for (int64_t i = 0; i < N; ++i) labels[i] = int32_t((i * 37 + 5) % V);
    labels[2] = labels[9] = -100;
    Dev gx(x, {N, V}), glab(labels, DType::F32, {N}), gnone(ignored, DType::F32, {N});
    for (const Dev* lab : {&glab, &gnone}) {
      for (LossReduction red : {LossReduction::Mean, LossReduction::Sum}) {
        for (DType dt : {DType::F32, DType::BF16}) {
          const std::string tag = "V " + std::to_string(V) + (lab == &gnone ? " no label" : "") +
                                  (red == LossReduction::Mean ? " mean" : " sum") +
                                  (dt == DType::BF16 ? " bf16" : " f32");
          CrossEntropyOptions o;
          o.reduction = red;
          auto fresh = [&] {  // NaN bits: a value left unwritten shows
            return dt == DType::BF16 ? Dev(std::vector<uint16_t>(size_t(N * V), 0x7FC1), dt, {N, V})
                                     : Dev(std::vector<float>(N * V, NAN), {N, V});
          };
          const int32_t* labs = lab->ptr<int32_t>();
          Dev lse_a(std::vector<float>(N, NAN), {N}), lse_b(std::vector<float>(N, NAN), {N});
          Dev dl_a = fresh(), dl_b = fresh();
          const CrossEntropyResult a = cuda::cross_entropy_forward(ctx(), lse_a.t, gx.t, labs, N, o);
          cuda::cross_entropy_backward(ctx(), dl_a.t, gx.t, lse_a.t, labs, N, 0.7f, o, true);
          const CrossEntropyResult b =
              cuda::cross_entropy_forward(ctx(), lse_b.t, gx.t, labs, N, o, dl_b.t, 0.7f);
          CHECK_MSG(std::memcmp(&a.loss, &b.loss, sizeof a.loss) == 0 && a.count == b.count,
                    tag + ": loss");
          CHECK_MSG(opt::bit_equal(host_of(lse_a), host_of(lse_b)), tag + ": lse");
          CHECK_MSG(dt == DType::BF16 ? host16_of(dl_a) == host16_of(dl_b)
                                      : opt::bit_equal(host_of(dl_a), host_of(dl_b)),
                    tag + ": dlogits");
          if (red == LossReduction::Mean) continue;
          // The rows variant, seeded as the chunked loss seeds its chunks (a Sum's scale).
          Dev rl_a(std::vector<float>(N, NAN), {N}), rl_b(std::vector<float>(N, NAN), {N});
          Dev pk_a(std::vector<float>(N, NAN), {N}), pk_b(std::vector<float>(N, NAN), {N});
          Dev rd_a = fresh(), rd_b = fresh();
          cuda::cross_entropy_rows(ctx(), rl_a.t, pk_a.t, gx.t, labs, N, o.ignore_index);
          cuda::cross_entropy_backward(ctx(), rd_a.t, gx.t, rl_a.t, labs, N, 0.3f, o, true);
          const cuda::CrossEntropyGradient grad{rd_b.t, 0.3f, LossReduction::Sum};
          cuda::cross_entropy_rows(ctx(), rl_b.t, pk_b.t, gx.t, labs, N, o.ignore_index, &grad);
          CHECK_MSG(opt::bit_equal(host_of(rl_a), host_of(rl_b)) &&
                        opt::bit_equal(host_of(pk_a), host_of(pk_b)),
                    tag + ": rows");
          CHECK_MSG(dt == DType::BF16 ? host16_of(rd_a) == host16_of(rd_b)
                                      : opt::bit_equal(host_of(rd_a), host_of(rd_b)),
                    tag + ": rows' dlogits");
        }
      }
    }
  }
  // A gradient of the wrong shape is refused before anything runs.
  Dev gx(random_vector(2 * 7, 3, -1, 1), {2, 7}), glse(std::vector<float>(2), {2});
  Dev glab(std::vector<int32_t>{1, 2}, DType::F32, {2}), small(std::vector<float>(7), {1, 7});
  CHECK_THROWS_CODE(cuda::cross_entropy_forward(ctx(), glse.t, gx.t, glab.ptr<int32_t>(), 2, {},
                                                small.t, 1.0f),
                    code::kShape);
}

// The loss summed on the device (cuda::cross_entropy_loss, Graph::loss_on_device) is the
// forward's, which sums on the host, to the bit: Sum and Mean over 1 to 4 warp passes of rows
// (a partial last one), ignored rows between, and Mean over no counted row (NaN).
CUDA_TEST(cuda_cross_entropy_loss_is_the_host_sum) {
  const int64_t V = 300;
  for (int64_t N : {1, 31, 32, 77, 128}) {
    const std::vector<float> x = random_vector(N * V, 17 + uint64_t(N), -6, 6);
    std::vector<int32_t> labels(static_cast<size_t>(N)), ignored(static_cast<size_t>(N), -100);
    for (int64_t i = 0; i < N; ++i) labels[size_t(i)] = i % 5 == 3 ? -100 : int32_t((i * 53 + 1) % V);
    Dev gx(x, {N, V}), glab(labels, DType::F32, {N}), gnone(ignored, DType::F32, {N});
    for (const Dev* lab : {&glab, &gnone}) {
      for (LossReduction red : {LossReduction::Sum, LossReduction::Mean}) {
        const std::string tag = "N " + std::to_string(N) + (lab == &gnone ? " no label" : "") +
                                (red == LossReduction::Mean ? " mean" : " sum");
        CrossEntropyOptions o;
        o.reduction = red;
        const int32_t* labs = lab->ptr<int32_t>();
        Dev lse(std::vector<float>(static_cast<size_t>(N), NAN), {N});
        Dev picked(std::vector<float>(static_cast<size_t>(N), NAN), {N});
        const CrossEntropyResult want = cuda::cross_entropy_forward(ctx(), lse.t, gx.t, labs, N, o);
        cuda::cross_entropy_rows(ctx(), lse.t, picked.t, gx.t, labs, N, o.ignore_index);
        Dev loss(std::vector<float>{1.5f}, {1});
        cuda::cross_entropy_loss(ctx(), loss.t, lse.t, picked.t, labs, N, o);
        const float got = host_of(loss)[0], expected = static_cast<float>(want.loss);
        CHECK_MSG(std::memcmp(&got, &expected, sizeof got) == 0,
                  tag + ": " + std::to_string(got) + " vs " + std::to_string(expected));
      }
    }
  }
  Dev lse(std::vector<float>(4), {4}), picked(std::vector<float>(4), {4});
  Dev two(std::vector<float>(2), {2});
  Dev glab(std::vector<int32_t>{1, 2, 3, 4}, DType::F32, {4});
  CHECK_THROWS_CODE(cuda::cross_entropy_loss(ctx(), two.t, lse.t, picked.t, glab.ptr<int32_t>(), 4),
                    code::kShape);
}

// ---- optimizer --------------------------------------------------------------------------------

CUDA_TEST(cuda_adamw_bit_identical_to_cpu) {
  const int64_t n = 5000;
  std::vector<float> p = random_vector(n, 130), g = random_vector(n, 131, -0.1f, 0.1f);
  std::vector<float> m = random_vector(n, 132, -0.01f, 0.01f), v = random_vector(n, 133, 0.f, 1e-4f);
  AdamWOptions o;
  o.lr = 3e-4;
  o.weight_decay = 0.1;
  Dev gp(p, {n}), gg(g, {n}), gm(m, {n}), gv(v, {n});
  for (int64_t step = 1; step <= 3; ++step) {
    adamw_update(view(p, {n}), view(g, {n}), view(m, {n}), view(v, {n}), step, o);
    cuda::adamw_update(ctx(), gp.t, gg.t, gm.t, gv.t, step, o);
  }
  CHECK(opt::bit_equal(host_of(gp), p));
  CHECK(opt::bit_equal(host_of(gm), m));
  CHECK(opt::bit_equal(host_of(gv), v));
  // Fused step with a bf16 compute copy, gradient scaling and clipping: CPU bits too.
  std::vector<float> p2 = p, g2 = g, m2 = m, v2 = v;
  std::vector<uint16_t> c(n);
  std::vector<AdamWFusedTensor> cpu = {{view(p2, {n}), view(g2, {n}), view(m2, {n}), view(v2, {n}),
                                        opt::view16(c, DType::BF16, {n}), true}};
  adamw_fused_update(cpu, 4, o, 0.125f, 0.75f);
  Dev gp2(p, {n}), gg2(g, {n}), gm2(m, {n}), gv2(v, {n}), gc(std::vector<uint16_t>(n), DType::BF16, {n});
  std::vector<AdamWFusedTensor> gpu = {{gp2.t, gg2.t, gm2.t, gv2.t, gc.t, true}};
  cuda::adamw_fused_update(ctx(), gpu, 4, o, 0.125f, 0.75f);
  CHECK(opt::bit_equal(host_of(gp2), p2));
  CHECK(opt::bit_equal(host_of(gg2), g2));  // zeroed
  CHECK(host16_of(gc) == c);
  CHECK_THROWS_CODE(cuda::adamw_update(ctx(), gp.t, gg.t, gm.t, gv.t, 0, o), code::kArgument);
}

// The fused step updates every tensor in one launch (a table of tensors, chunks of 4096
// elements): sizes around the chunk edges, an empty tensor, with and without weight decay, bf16,
// f16 and no compute copy: each tensor gets the CPU's bits, moments and zeroed gradient included.
// The gradient norm reads them in one launch too (blocks of 64K): the CPU's norm.
CUDA_TEST(cuda_adamw_fused_many_tensors_bit_identical_to_cpu) {
  const std::vector<int64_t> sizes = {4097, 1, 0, 4096, 70000, 4095, 9000, 3};
  AdamWOptions o;
  o.lr = 1e-3;
  o.weight_decay = 0.05;
  struct Host {
    std::vector<float> p, g, m, v;
    std::vector<uint16_t> c;
    DType compute;
  };
  std::vector<Host> host;
  std::vector<std::unique_ptr<Dev>> dev;
  std::vector<AdamWFusedTensor> cpu, gpu;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i];
    const uint64_t seed = 300 + 10 * i;
    host.push_back(Host{random_vector(size_t(n), seed), random_vector(size_t(n), seed + 1, -0.1f, 0.1f),
                        random_vector(size_t(n), seed + 2, -0.01f, 0.01f),
                        random_vector(size_t(n), seed + 3, 0.f, 1e-4f), std::vector<uint16_t>(size_t(n)),
                        i % 3 == 0 ? DType::BF16 : i % 3 == 1 ? DType::F16 : DType::F32});
  }
  std::vector<float> norm_input;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Host& h = host[i];
    const int64_t n = sizes[i];
    const bool decay = i % 2 == 0;
    const bool copy = h.compute != DType::F32;
    for (const std::vector<float>* x : {&h.p, &h.g, &h.m, &h.v}) {
      dev.push_back(std::make_unique<Dev>(*x, std::initializer_list<int64_t>{n}));
    }
    dev.push_back(std::make_unique<Dev>(h.c, copy ? h.compute : DType::BF16,
                                        std::initializer_list<int64_t>{n}));
    const std::unique_ptr<Dev>* d = &dev[dev.size() - 5];
    norm_input.insert(norm_input.end(), h.g.begin(), h.g.end());
    cpu.push_back({view(h.p, {n}), view(h.g, {n}), view(h.m, {n}), view(h.v, {n}),
                   copy ? opt::view16(h.c, h.compute, {n}) : Tensor{}, decay});
    gpu.push_back({d[0]->t, d[1]->t, d[2]->t, d[3]->t, copy ? d[4]->t : Tensor{}, decay});
  }
  std::vector<Tensor> grads;
  for (const AdamWFusedTensor& x : gpu) grads.push_back(x.grad);
  const double norm = cuda::scaled_grad_norm(ctx(), grads, 0.5f);
  const int64_t total = int64_t(norm_input.size());
  const double cpu_norm = scaled_grad_norm({view(norm_input, {total})}, 0.5f);
  CHECK_ERR(std::fabs(norm - cpu_norm) / cpu_norm, 1e-10, "scaled_grad_norm over many tensors");
  adamw_fused_update(cpu, 7, o, 0.5f, 0.8f);
  cuda::adamw_fused_update(ctx(), gpu, 7, o, 0.5f, 0.8f);
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::unique_ptr<Dev>* d = &dev[5 * i];
    const std::string tag = "tensor " + std::to_string(i) + " (" + std::to_string(sizes[i]) + ")";
    CHECK_MSG(opt::bit_equal(host_of(*d[0]), host[i].p), tag + ": param");
    CHECK_MSG(opt::bit_equal(host_of(*d[1]), host[i].g), tag + ": grad (zeroed)");
    CHECK_MSG(opt::bit_equal(host_of(*d[2]), host[i].m), tag + ": exp_avg");
    CHECK_MSG(opt::bit_equal(host_of(*d[3]), host[i].v), tag + ": exp_avg_sq");
    if (host[i].compute != DType::F32) CHECK_MSG(host16_of(*d[4]) == host[i].c, tag + ": copy");
  }
}

CUDA_TEST(cuda_grad_norm_and_clip) {
  std::vector<float> a = random_vector(70000, 140), b = random_vector(333, 141);
  const double cpu = grad_norm({view(a, {70000}), view(b, {333})});
  Dev ga(a, {70000}), gb(b, {333});
  const double gpu = cuda::grad_norm(ctx(), {ga.t, Tensor{}, gb.t});
  CHECK_ERR(std::fabs(gpu - cpu) / cpu, 1e-10, "grad_norm");
  CHECK(cuda::grad_norm(ctx(), {ga.t, gb.t}) == gpu);  // deterministic
  const double scaled_cpu = scaled_grad_norm({view(a, {70000})}, 1024.f);
  CHECK_ERR(std::fabs(cuda::scaled_grad_norm(ctx(), {ga.t}, 1024.f) - scaled_cpu) / scaled_cpu, 1e-10,
            "scaled_grad_norm");
  std::vector<float> a2 = a;
  const double total = clip_grad_norm({view(a2, {70000})}, 1.0);
  const double gtotal = cuda::clip_grad_norm(ctx(), {ga.t}, 1.0);
  CHECK_ERR(std::fabs(gtotal - total) / total, 1e-10, "clip_grad_norm total");
  expect_close(host_of(ga), a2, 1e-6, "clipped gradients");
}

// The optimizer step queued without a wait (Backend::clipped_adamw_update): the norm stays on
// the device and the update reads its clipping factor there. Against the waiting calls
// (scaled_grad_norm, then adamw_fused_update with the host's clip_coefficient) on copies of the
// same tensors: the same bits, clipped or not, then a non-finite gradient (grads zeroed, nothing
// else written) and a bad input a kernel reported before (nothing written but the norm,
// synchronize raises it). Under the simulator it also counts: no download, no wait.
CUDA_TEST(cuda_clipped_adamw_update_is_the_waiting_step) {
  const std::vector<int64_t> sizes = {70000, 5, 4097};
  AdamWOptions o;
  o.lr = 2e-3;
  o.weight_decay = 0.1;
  struct Copy {
    std::vector<std::unique_ptr<Dev>> dev;  // p, g, m, v, bf16 copy per tensor
    std::vector<AdamWFusedTensor> tensors;
    std::vector<Tensor> grads;
  };
  auto make = [&](float poison) {
    Copy c;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const int64_t n = sizes[i];
      const uint64_t seed = 700 + 10 * i;
      std::vector<float> g = random_vector(size_t(n), seed + 1, -0.1f, 0.1f);
      if (i == 2) g[11] = poison == 0.f ? g[11] : poison;
      for (const std::vector<float>& x :
           {random_vector(size_t(n), seed), g, random_vector(size_t(n), seed + 2, -0.01f, 0.01f),
            random_vector(size_t(n), seed + 3, 0.f, 1e-4f)}) {
        c.dev.push_back(std::make_unique<Dev>(x, std::initializer_list<int64_t>{n}));
      }
      c.dev.push_back(std::make_unique<Dev>(std::vector<uint16_t>(size_t(n)), DType::BF16,
                                            std::initializer_list<int64_t>{n}));
      const std::unique_ptr<Dev>* d = &c.dev[c.dev.size() - 5];
      c.tensors.push_back({d[0]->t, d[1]->t, d[2]->t, d[3]->t, d[4]->t, i != 1});
      c.grads.push_back(d[1]->t);
    }
    return c;
  };
  auto same = [&](const Copy& a, const Copy& b, const std::string& tag) {
    for (size_t k = 0; k < a.dev.size(); ++k) {
      const bool copy16 = k % 5 == 4;
      const bool equal = copy16 ? host16_of(*a.dev[k]) == host16_of(*b.dev[k])
                                : opt::bit_equal(host_of(*a.dev[k]), host_of(*b.dev[k]));
      CHECK_MSG(equal, tag + ": tensor " + std::to_string(k / 5) + " part " + std::to_string(k % 5));
    }
  };
  cuda::DeviceBuffer norm_slot(ctx(), sizeof(double));
  auto norm_on_device = [&] {
    double x = 0;
    cuda::download(ctx(), &x, norm_slot.data(), sizeof(x));
    return x;
  };
  const float grad_scale = 0.5f;
  for (const double max_norm : {0.05, 1e9, 0.0}) {
    const std::string tag = "max_norm " + std::to_string(max_norm);
    Copy waited = make(0.f), queued = make(0.f);
    const double norm = cuda::scaled_grad_norm(ctx(), waited.grads, grad_scale);
    const float coef = max_norm > 0 ? clip_coefficient(norm, max_norm) : 1.0f;
    cuda::adamw_fused_update(ctx(), waited.tensors, 3, o, grad_scale, coef);
#if S2S_SIMT_SIM
    s2s::simt::queued_work() = s2s::simt::QueuedWork{};
#endif
    cuda::clipped_adamw_update(ctx(), queued.tensors, 3, o, grad_scale, max_norm,
                               static_cast<double*>(norm_slot.data()));
#if S2S_SIMT_SIM
    CHECK_MSG(s2s::simt::queued_work().downloads == 0, tag + ": the queued step downloaded");
#endif
    CHECK_MSG(norm_on_device() == norm, tag + ": norm");
    same(waited, queued, tag);
    if (max_norm == 0.05) CHECK_MSG(coef < 1.0f, "the first case clips");
  }
  {  // a non-finite gradient: the step is skipped, its grads zeroed
    Copy before = make(INFINITY), queued = make(INFINITY);
    cuda::clipped_adamw_update(ctx(), queued.tensors, 3, o, grad_scale, 1.0,
                               static_cast<double*>(norm_slot.data()));
    CHECK(std::isinf(norm_on_device()));
    for (size_t k = 1; k < before.dev.size(); k += 5) {  // what a skipped step leaves: zeros
      cuda::fill_zero(ctx(), before.dev[k]->buf.data(), before.dev[k]->buf.bytes());
    }
    same(before, queued, "non-finite: grads zeroed, nothing else written");
  }
  {  // a kernel reported a bad input earlier in the step: nothing written but the norm
    Copy before = make(0.f), queued = make(0.f);
    const unsigned long long report[4] = {
        (unsigned long long)cuda::KernelReport::EmbeddingId, 3, 999, 97};
    cuda::upload(ctx(), ctx().error_slot(), report, sizeof(report));
    cuda::clipped_adamw_update(ctx(), queued.tensors, 3, o, grad_scale, 1.0,
                               static_cast<double*>(norm_slot.data()));
    CHECK_THROWS_CODE(ctx().synchronize(), code::kArgument);
    same(before, queued, "bad input");
    CHECK(norm_on_device() == cuda::scaled_grad_norm(ctx(), queued.grads, grad_scale));
  }
  Copy bad = make(0.f);
  CHECK_THROWS_CODE(cuda::clipped_adamw_update(ctx(), bad.tensors, 0, o, 1.0f, 1.0,
                                               static_cast<double*>(norm_slot.data())),
                    code::kArgument);
  CHECK_THROWS_CODE(cuda::clipped_adamw_update(ctx(), bad.tensors, 1, o, 1.0f, INFINITY,
                                               static_cast<double*>(norm_slot.data())),
                    code::kArgument);
}

// fp16 training: an overflowing scaled gradient makes the norm non-finite, the scaler skips the
// step and halves the scale; the next finite step is applied.
CUDA_TEST(cuda_fp16_loss_scaling_skips_overflow) {
  DynamicLossScaler scaler;
  std::vector<float> g = random_vector(1000, 150);
  g[10] = INFINITY;
  Dev gg(g, {1000});
  const double norm = cuda::grad_norm(ctx(), {gg.t});
  CHECK(!std::isfinite(norm));
  CHECK(!scaler.update(!std::isfinite(norm)));
  CHECK(scaler.scale() == 32768.0f);
  g[10] = 0.5f;
  Dev ok(g, {1000});
  CHECK(scaler.update(!std::isfinite(cuda::grad_norm(ctx(), {ok.t}))));
}

// ---- registration: only where a device exists -----------------------------------------------

S2S_CUDA_TESTS_JOIN_WHEN_DEVICE_PRESENT("CUDA cases");

#else  // !S2S_HAVE_CUDA

S2S_CUDA_TESTS_NOT_BUILT();

#endif
