// The CUDA backend's plain-C++ parts, tested on any machine: the fp16 loss scaler (GradScaler's
// update rule), the device arena's bookkeeping (over heap blocks), the kernels' launch shapes,
// and the device option (parse, and resolve on a binary without the backend).
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "backends/cuda/device_arena.h"
#include "backends/cuda/launch.h"
#include "harness.h"
#include "s2s/device.h"
#include "s2s/nn/backend.h"
#include "s2s/error.h"
#include "s2s/train/loss_scaler.h"

using namespace s2s;

// ---- loss scaler -------------------------------------------------------------------------------
// Expected values follow torch's _amp_update_scale_ (aten/src/ATen/native/cuda/AmpKernels.cu):
// inf -> scale * backoff, tracker 0; else tracker + 1, and at growth_interval scale * growth
// (kept only if finite), tracker 0.

TEST(loss_scaler_defaults_are_torch_grad_scaler) {
  DynamicLossScaler s;
  CHECK(s.scale() == 65536.0f);
  CHECK(s.inverse_scale() == 1.0f / 65536.0f);
  CHECK(s.options().growth_interval == 2000);
  CHECK(s.state().growth_tracker == 0);
}

TEST(loss_scaler_overflow_skips_and_backs_off) {
  DynamicLossScaler s;
  CHECK(!s.update(true));  // step skipped
  CHECK(s.scale() == 32768.0f);
  CHECK(s.skipped_steps() == 1);
  CHECK(!s.update(true));
  CHECK(s.scale() == 16384.0f);
  CHECK(s.update(false));  // a good step is applied
  CHECK(s.scale() == 16384.0f);
  CHECK(s.state().growth_tracker == 1);
  CHECK(s.skipped_steps() == 2);
}

TEST(loss_scaler_grows_after_interval_and_overflow_resets_tracker) {
  LossScalerOptions o;
  o.init_scale = 8.0f;
  o.growth_interval = 3;
  DynamicLossScaler s(o);
  CHECK(s.update(false) && s.update(false));
  CHECK(s.scale() == 8.0f && s.state().growth_tracker == 2);
  CHECK(s.update(false));  // third good step: grows
  CHECK(s.scale() == 16.0f && s.state().growth_tracker == 0);
  CHECK(s.update(false) && s.update(false));
  CHECK(!s.update(true));  // overflow before the interval: back off, tracker restarts
  CHECK(s.scale() == 8.0f && s.state().growth_tracker == 0);
  CHECK(s.update(false) && s.update(false) && s.update(false));
  CHECK(s.scale() == 16.0f);
}

TEST(loss_scaler_never_grows_to_infinity) {
  LossScalerOptions o;
  o.init_scale = 3.0e38f;
  o.growth_interval = 1;
  DynamicLossScaler s(o);
  CHECK(s.update(false));
  CHECK(s.scale() == 3.0e38f);  // 6e38 would overflow fp32: kept
  CHECK(s.state().growth_tracker == 0);
}

TEST(loss_scaler_disabled_is_identity) {
  LossScalerOptions o;
  o.enabled = false;
  DynamicLossScaler s(o);
  CHECK(s.scale() == 1.0f && s.inverse_scale() == 1.0f);
  CHECK(s.update(true));  // bf16 / fp32 training never skips
  CHECK(s.skipped_steps() == 0);
}

TEST(loss_scaler_state_round_trip_and_validation) {
  DynamicLossScaler s;
  s.update(true);
  s.update(false);
  DynamicLossScaler t;
  t.load_state(s.state());
  CHECK(t.scale() == s.scale() && t.state().growth_tracker == 1);
  CHECK_THROWS_CODE(t.load_state(LossScalerState{0.0f, 0}), code::kArgument);
  CHECK_THROWS_CODE(t.load_state(LossScalerState{1.0f, 2000}), code::kArgument);
  LossScalerOptions bad;
  bad.backoff_factor = 1.0f;
  CHECK_THROWS_CODE(DynamicLossScaler{bad}, code::kArgument);
  bad = LossScalerOptions{};
  bad.growth_factor = 1.0f;
  CHECK_THROWS_CODE(DynamicLossScaler{bad}, code::kArgument);
  bad = LossScalerOptions{};
  bad.init_scale = INFINITY;
  CHECK_THROWS_CODE(DynamicLossScaler{bad}, code::kArgument);
  bad = LossScalerOptions{};
  bad.growth_interval = 0;
  CHECK_THROWS_CODE(DynamicLossScaler{bad}, code::kArgument);
}

// ---- device arena ------------------------------------------------------------------------------

namespace {
// Heap blocks standing in for cudaMalloc; `budget` bytes, then allocation fails.
struct HeapSource {
  explicit HeapSource(size_t bytes) : budget(bytes) {}
  size_t budget;
  size_t live = 0;
  int allocations = 0, releases = 0;
  struct Mark {
    void* p;
    size_t bytes;
    bool usable;
  };
  std::vector<Mark> marks;  // BlockSource::mark's calls
  cuda::BlockSource source() {
    return cuda::BlockSource{[this](size_t bytes) -> void* {
                               if (live + bytes > budget) return nullptr;
                               live += bytes;
                               ++allocations;
                               return std::aligned_alloc(256, bytes);
                             },
                             [this](void* p) {
                               ++releases;
                               std::free(p);
                             },
                             [this](void* p, size_t bytes, bool usable) {
                               marks.push_back({p, bytes, usable});
                             }};
  }
};
bool aligned(void* p) { return reinterpret_cast<uintptr_t>(p) % cuda::DeviceArena::kAlignment == 0; }
}  // namespace

TEST(device_arena_aligns_and_packs_in_order) {
  HeapSource heap{1 << 20};
  cuda::DeviceArena a(heap.source(), 4096);
  uint8_t* p1 = static_cast<uint8_t*>(a.allocate(10));
  uint8_t* p2 = static_cast<uint8_t*>(a.allocate(300));
  uint8_t* p3 = static_cast<uint8_t*>(a.allocate(256));
  CHECK(aligned(p1) && aligned(p2) && aligned(p3));
  CHECK(p2 == p1 + 256);  // 10 bytes round up to one 256-byte unit
  CHECK(p3 == p2 + 512);
  CHECK(a.bytes_in_use() == 1024);
  CHECK(a.bytes_reserved() == 4096);
  CHECK(heap.allocations == 1);
}

// The marks that let AddressSanitizer check the simulator's kernels (BlockSource::mark): a new
// block all unusable, then exactly the requested bytes of each allocation usable (the padding
// after them stays unusable); a rewind marks nothing (a replayed pass reads its scratch).
TEST(device_arena_marks_the_bytes_it_hands_out) {
  HeapSource heap{1 << 20};
  cuda::DeviceArena a(heap.source(), 4096);
  void* p1 = a.allocate(10);
  void* p2 = a.allocate(300);
  a.reset();
  void* p3 = a.allocate(5000);  // the first block cannot hold it: a block of its own
  CHECK(heap.marks.size() == 5);
  if (heap.marks.size() != 5) return;
  CHECK(heap.marks[0].p == p1 && heap.marks[0].bytes == 4096 && !heap.marks[0].usable);
  CHECK(heap.marks[1].p == p1 && heap.marks[1].bytes == 10 && heap.marks[1].usable);
  CHECK(heap.marks[2].p == p2 && heap.marks[2].bytes == 300 && heap.marks[2].usable);
  CHECK(heap.marks[3].p == p3 && heap.marks[3].bytes == 5120 && !heap.marks[3].usable);
  CHECK(heap.marks[4].p == p3 && heap.marks[4].bytes == 5000 && heap.marks[4].usable);
}

TEST(device_arena_grows_by_blocks_and_rewinds) {
  HeapSource heap{1 << 20};
  cuda::DeviceArena a(heap.source(), 1024);
  a.allocate(512);
  const cuda::DeviceArena::Mark m = a.mark();
  void* big = a.allocate(2048);  // larger than a block: a block of its own
  CHECK(big != nullptr && heap.allocations == 2);
  a.allocate(768);               // does not fit the big block's tail: a third block
  CHECK(heap.allocations == 3);
  CHECK(a.block_count() == 3);
  CHECK(a.peak_bytes_in_use() == 1024 + 2048 + 768);
  a.rewind(m);
  CHECK(a.bytes_in_use() == 512);
  // Rewound blocks are reused: the same request sequence allocates nothing new.
  void* again = a.allocate(2048);
  CHECK(again == big);
  a.allocate(768);
  CHECK(heap.allocations == 3);
  a.reset();
  CHECK(a.bytes_in_use() == 0);
  CHECK(a.peak_bytes_in_use() == 1024 + 2048 + 768);
  a.release_all();
  CHECK(heap.releases == 3 && a.bytes_reserved() == 0);
}

TEST(device_arena_out_of_memory_is_an_error_not_an_abort) {
  HeapSource heap{4096};
  cuda::DeviceArena a(heap.source(), 2048);
  a.allocate(1024);
  a.allocate(1024);
  a.allocate(2048);  // second block: budget now used
  CHECK_THROWS_CODE(a.allocate(512), code::kOutOfMemory);
  // The arena is still usable after the failure: rewinding frees room in the existing blocks.
  a.reset();
  CHECK(a.allocate(2048) != nullptr);
  CHECK(heap.allocations == 2);
}

TEST(device_arena_scope_and_bad_marks) {
  HeapSource heap{1 << 20};
  cuda::DeviceArena a(heap.source(), 4096);
  a.allocate(256);
  {
    cuda::ArenaScope scope(a);
    a.allocate(1024);
    CHECK(a.bytes_in_use() == 1280);
  }
  CHECK(a.bytes_in_use() == 256);
  CHECK_THROWS_CODE(a.rewind(cuda::DeviceArena::Mark{0, 4096}), code::kArgument);
  CHECK_THROWS_CODE(a.release_all(), code::kArgument);  // still in use
}

// ---- launch shapes -------------------------------------------------------------------------------

TEST(launch_shapes) {
  CHECK(cuda::ceil_div(10, 4) == 3 && cuda::ceil_div(8, 4) == 2);
  cuda::Launch e = cuda::elementwise_launch(0);
  CHECK(e.blocks == 0);
  e = cuda::elementwise_launch(1000);
  CHECK(e.blocks == 4 && e.threads == 256);
  e = cuda::elementwise_launch(int64_t(1) << 40);
  CHECK(e.blocks == 8192);  // grid-stride beyond this
  cuda::RowLaunch r = cuda::row_launch(10, 768);
  CHECK(r.warp_per_row() && r.rows_per_block == 4 && r.blocks == 3 && r.threads == 128);
  r = cuda::row_launch(10, 1025);
  CHECK(!r.warp_per_row() && r.blocks == 10 && r.threads == 256);
  r = cuda::row_launch(3, 50257);
  CHECK(r.blocks == 3 && r.threads == 1024);
  CHECK(cuda::row_launch(0, 5).blocks == 0);
  const cuda::ColumnReducePlan p = cuda::column_reduce_plan(16384, 768);
  CHECK(p.chunks == 64 && p.column_blocks == 6);
  CHECK(cuda::column_reduce_plan(1, 1).chunks == 1);
  CHECK_THROWS_CODE(cuda::column_reduce_plan(cuda::kMaxGridYZ * cuda::kReduceChunkRows + 1, 4),
                    code::kArgument);
  // The norms' fused backward: GPT-2's rows (4 warps, 32-row chunks); a block per row up to the
  // 48 KB of shared memory; past it, or at 1024 threads a row, the separate kernels.
  cuda::NormBackwardPlan nb = cuda::norm_backward_plan(16384, 768, 2);
  CHECK(nb.fused && nb.teams == 4 && nb.threads == 128 && nb.chunks == 512);
  CHECK(nb.smem_bytes == 4 * 2 * 768 * 4 && nb.finish_blocks == 12);
  nb = cuda::norm_backward_plan(33, 3000, 2);
  CHECK(nb.fused && nb.teams == 1 && nb.threads == 256 && nb.chunks == 2);
  CHECK(!cuda::norm_backward_plan(5, 7000, 2).fused && cuda::norm_backward_plan(5, 7000, 1).fused);
  // The sums share the block's 48 KB with the row reductions' static scratch: 6,144 columns of
  // two sums (exactly 48 KB) would not launch.
  CHECK(cuda::norm_backward_plan(5, 6016, 2).fused && !cuda::norm_backward_plan(5, 6144, 2).fused);
  CHECK(!cuda::norm_backward_plan(5, 9000, 1).fused);
  CHECK(!cuda::norm_backward_plan(0, 8, 1).fused && !cuda::norm_backward_plan(8, 8, 0).fused);
  CHECK(cuda::attention_head_chunks(64) == 2 && cuda::attention_head_chunks(80) == 3 &&
        cuda::attention_head_chunks(256) == 8);
  CHECK_THROWS_CODE(cuda::attention_head_chunks(257), code::kShape);
  // D = 128: three padded 32x129 tiles + 96 floats = 49,920 bytes (over the 48 KB default).
  CHECK(cuda::attention_smem_bytes(128, 3) == (3 * 32 * 129 + 96) * 4);
  CHECK_THROWS_CODE(cuda::check_attention_grid(1, 70000, 1), code::kArgument);
}

// ---- the device option ---------------------------------------------------------------------------

#define CHECK_TEXT(got, want)                  \
  do {                                         \
    const std::string got_text = (got);        \
    CHECK_MSG(got_text == (want), got_text);   \
  } while (0)

TEST(device_request_parsing) {
  const auto parsed = [](const char* name) {
    const DeviceSpec d = parse_device(name, "t");
    return std::make_pair(d.request, d.index);
  };
  CHECK(parsed("auto") == std::make_pair(DeviceRequest::Auto, 0));
  CHECK(parsed("cpu") == std::make_pair(DeviceRequest::Cpu, 0));
  CHECK(parsed("cuda") == std::make_pair(DeviceRequest::Cuda, 0));
  CHECK(parsed("cuda:0") == std::make_pair(DeviceRequest::Cuda, 0));
  CHECK(parsed("cuda:13") == std::make_pair(DeviceRequest::Cuda, 13));
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda: 1", "cuda:1x", "cuda:0x1",
                          "cuda:99999", "CUDA", "cpu:0", "cuda1"}) {
    CHECK_THROWS_CODE(parse_device(bad, "t"), code::kArgument);
  }
  try {
    parse_device("gpu", "loadModel");
    CHECK_MSG(false, "expected 'gpu' to be refused");
  } catch (const Error& e) {
    CHECK_TEXT(e.what(), "[loadModel] expected device 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU "
                         "index), got 'gpu'");
  }
  CHECK(resolve_model_device({DeviceRequest::Cpu, 0}, "t") == Device{});
  // auto: GPU 0 exactly when the backend is usable there (built, supported, cuBLASLt found).
  const CudaStatus s = cuda_status();
  const Device expected = s.usable() ? Device{DeviceKind::Cuda, 0} : Device{};
  CHECK(resolve_model_device(DeviceSpec{}, "t") == expected);
  CHECK_TEXT(Device{}.name(), "cpu");
  CHECK_TEXT((Device{DeviceKind::Cuda, 0}.name()), "cuda:0");
  CHECK_TEXT((Device{DeviceKind::Cuda, 3}.name()), "cuda:3");
}

// The per-device problems behind `cuda:N`, on a hand-made status (no GPU needed).
TEST(device_problem_names_the_gpu) {
  CudaStatus s;
  s.built = true;
  s.min_compute_capability = 80;
  CudaDeviceInfo old_gpu, new_gpu;
  old_gpu.index = 0, old_gpu.name = "Old GPU", old_gpu.supported = false;
  old_gpu.compute_major = 7, old_gpu.compute_minor = 5;
  new_gpu.index = 1, new_gpu.name = "New GPU", new_gpu.compute_major = 9;
  s.devices = {old_gpu, new_gpu};
  CHECK_TEXT(s.device_problem(1), "");
  CHECK_TEXT(s.device_problem(0), "GPU 0 (Old GPU) has compute capability 7.5; this build has "
                                  "kernels for 8.0 and newer");
  CHECK_TEXT(s.device_problem(2), "there is no GPU 2 (the CUDA runtime sees 2 devices: 0: Old GPU, "
                                  "1: New GPU; CUDA_VISIBLE_DEVICES renumbers them)");
  s.runtime_problem = "no cuBLASLt";  // the runtime's problem comes first, for every GPU
  CHECK_TEXT(s.device_problem(1), "no cuBLASLt");
}

TEST(device_cuda_request_is_a_clear_error) {
  const CudaStatus s = cuda_status();
#if S2S_HAVE_CUDA
  CHECK(s.built);
#else
  CHECK(!s.built && s.devices.empty() && !s.problem.empty());
#endif
  // device 'cuda' is granted exactly when the backend is usable; otherwise it is refused with
  // S2S_DEVICE saying whether the backend is missing or what keeps the GPU from being used.
  if (s.usable()) {
    CHECK(resolve_model_device({DeviceRequest::Cuda, 0}, "loadModel") ==
          (Device{DeviceKind::Cuda, 0}));
    return;
  }
  try {
    resolve_model_device({DeviceRequest::Cuda, 0}, "loadModel");
    CHECK_MSG(false, "expected device 'cuda' to be refused");
  } catch (const Error& e) {
    CHECK(e.code() == code::kDevice);
    const std::string m = e.what();
#if !S2S_HAVE_CUDA
    CHECK_MSG(m.find("CUDA backend not built into this binary") != std::string::npos, m);
#else
    CHECK_MSG(m.find("no usable CUDA device") != std::string::npos, m);
#endif
    CHECK_MSG(m.find("[loadModel]") == 0, m);
  }
  // make_backend says the same for a CUDA model.
  CHECK_THROWS_CODE(make_backend(Device{DeviceKind::Cuda, 0}, "loadModel"), code::kDevice);
}
