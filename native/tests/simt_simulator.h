// A CPU simulator for CUDA kernels: every thread of a block runs as a fiber on one OS
// thread, and each collective — __syncthreads, a warp shuffle, a warp-wide
// mma.sync.m16n8k16 or ldmatrix — suspends the fiber until every thread it involves has arrived, then is
// performed from all their operands at once. The mma takes each lane's fragment registers and
// places their 16-bit values in the A, B and C matrices by the PTX ISA's fragment layout, so a
// kernel that feeds the instruction the wrong registers fails here as on a GPU. Divergent
// collectives (some lanes at a shuffle, others at an mma or a barrier) and barriers that exited
// threads never reach are reported as errors, not deadlocks. Shared memory starts as 0xFF bytes
// (NaN in fp32, bf16 and f16), so a read of a value never written shows up as NaN, and a guard
// zone after it catches writes past the end. A kernel's static __shared__ arrays (declared to
// the simulator as each block first reaches them: declare_static_shared) are poisoned alike and
// counted with the dynamic bytes against the launch's limit, as a GPU counts them. Blocks run one after another; a fiber switches only
// at a collective, so atomics need no locking. A GPU performs a cp.async copy at any moment
// between the instruction and the cp.async.wait_group that covers its group; the simulator
// takes the latest in order (a read of the destination before that wait, or with no wait, sees
// the old contents) and the earliest otherwise (a copy issued into a buffer that other warps
// still read, with no barrier between, overwrites it under their feet).
// A GPU promises no order among blocks, nor among a block's threads between two collectives, so
// a kernel whose results depend on the order has a race (a missing __syncthreads, a block that
// reads what another block of the same launch writes). The order is the Schedule: in order,
// reversed or shuffled (S2S_SIMT_SCHEDULE, or Simulator::set_schedule); the simulated suites run
// under each, and deterministic kernels must give the same bits under all three.
// Two ways in: kernel bodies written against an execution policy (attention_mma.cuh) get a
// SimThread; whole .cu files compiled as C++ against the CUDA runtime stand-in
// (native/tests/simt_cuda/) reach the running simulator through Simulator::current().
// Linux only: fibers switch with a few instructions on x86-64, with ucontext elsewhere.
#pragma once
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/cuda/half_bits.h"
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#if defined(__x86_64__)
// Switches fibers (System V x86-64): pushes the callee-saved registers, MXCSR and the x87 control
// word, stores the stack pointer in *save_sp, loads load_sp and pops the same. Weak, so every
// translation unit may carry the definition. (swapcontext would also save the signal mask, a
// system call per switch: the simulator switches millions of times.)
extern "C" void s2s_simt_switch(void** save_sp, void* load_sp);
asm(R"(
  .pushsection .text
  .weak s2s_simt_switch
  .type s2s_simt_switch,@function
s2s_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size s2s_simt_switch, .-s2s_simt_switch
  .popsection
)");
#endif

namespace s2s {
namespace cuda {
struct AttentionGeometry;
}
namespace simt {

// A suspended fiber (or the scheduler): where to resume it.
struct FiberContext {
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
};

// Makes `c` start `entry` (which must never return) on the given stack at the next switch.
inline void fiber_prepare(FiberContext& c, char* stack, size_t bytes, void (*entry)()) {
#if defined(__SANITIZE_ADDRESS__)
  // A fiber is abandoned inside its frames (a block's threads never return), so the stack
  // keeps AddressSanitizer's redzones of those frames; a stack used again starts clean.
  ASAN_UNPOISON_MEMORY_REGION(stack, bytes);
#endif
#if defined(__x86_64__)
  // The frame s2s_simt_switch pops: MXCSR + x87 control word, r15..rbp, then `entry` as the
  // return address; entry then starts with rsp = 8 mod 16, as after a call.
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
  uint64_t* frame = reinterpret_cast<uint64_t*>(top - 72);
  const uint32_t mxcsr = 0x1F80, x87_cw = 0x037F;  // the defaults: round to nearest, all masked
  std::memcpy(frame, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(frame) + 4, &x87_cw, 4);
  for (int i = 1; i <= 6; ++i) frame[i] = 0;
  frame[7] = reinterpret_cast<uint64_t>(entry);
  frame[8] = 0;  // entry's (never used) return address
  c.sp = frame;
#else
  getcontext(&c.ctx);
  c.ctx.uc_stack.ss_sp = stack;
  c.ctx.uc_stack.ss_size = bytes;
  c.ctx.uc_link = nullptr;
  makecontext(&c.ctx, entry, 0);
#endif
}

inline void fiber_switch(FiberContext& save, FiberContext& load) {
#if defined(__x86_64__)
  s2s_simt_switch(&save.sp, load.sp);
#else
  swapcontext(&save.ctx, &load.ctx);
#endif
}

struct Dim3 {
  int x = 1, y = 1, z = 1;
};

// The order blocks run in, and how a block's threads run between barriers. In order: blocks x
// fastest, then y, z; every fiber (0..n-1) runs to its next collective, warps in lockstep.
// Reversed or shuffled (a permutation drawn per launch and per round from a fixed seed, so a
// failure reproduces): blocks, warps and a warp's threads in that order, and each warp runs
// ahead through its shuffles and mmas to the next barrier before the next warp starts.
enum class Schedule { InOrder, Reversed, Shuffled };

// S2S_SIMT_SCHEDULE: unset or "in-order", "reversed", "shuffled".
inline Schedule schedule_from_env() {
  const char* v = std::getenv("S2S_SIMT_SCHEDULE");
  if (v == nullptr || *v == 0 || std::strcmp(v, "in-order") == 0) return Schedule::InOrder;
  if (std::strcmp(v, "reversed") == 0) return Schedule::Reversed;
  if (std::strcmp(v, "shuffled") == 0) return Schedule::Shuffled;
  throw std::runtime_error(std::string("S2S_SIMT_SCHEDULE: expected in-order, reversed or "
                                       "shuffled, got \"") + v + "\"");
}

class Simulator;

// What a simulated thread hands an execution-policy kernel body (attention_mma.cuh's X).
class SimThread {
 public:
  SimThread(Simulator* sim, int tid) : sim_(sim), tid_(tid) {}
  int tid() const { return tid_; }
  int block_x() const;
  int block_y() const;
  int block_z() const;
  void sync() const;
  float shfl_xor(float v, int mask) const;
  void mma(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16) const;
  void ldmatrix(uint32_t* r, int count, const uint16_t* row) const;
  void ldmatrix_trans(uint32_t r[2], const uint16_t* row) const;  // .x2.trans
  void cp_async16(void* smem_dst, const void* src) const;  // cp.async.cg ... 16
  void cp_async_commit() const;                             // cp.async.commit_group
  void cp_async_wait(int pending) const;                    // cp.async.wait_group pending
  void report_bad_mask(const cuda::AttentionGeometry&, int64_t index, int value) const;

 private:
  Simulator* sim_;
  int tid_;
};

class Simulator {
 public:
  using Body = std::function<void(const SimThread&, uint8_t* smem)>;

  // The schedule of every launch from now on, in every simulator of the process.
  static Schedule schedule() { return schedule_slot(); }
  static void set_schedule(Schedule s) { schedule_slot() = s; }

  // A block's most shared memory on compute capability 9.0, static and dynamic together, for a
  // kernel that opted in (cudaFuncSetAttribute); without, 48 KB (kDefaultSharedBytes).
  static constexpr size_t kMaxSharedBytes = size_t(227) << 10;
  static constexpr size_t kDefaultSharedBytes = size_t(48) << 10;

  // Runs body on every thread of every block of `grid`, in the schedule's order, with
  // smem_bytes of dynamic shared memory; the static arrays the blocks declare must fit beside
  // them in shared_limit bytes.
  void launch(Dim3 grid, int threads, size_t smem_bytes, const Body& body,
              size_t shared_limit = kMaxSharedBytes) {
    if (threads <= 0 || threads > 1024) {
      throw std::runtime_error("simt: threads per block must be in [1, 1024], got " +
                               std::to_string(threads));
    }
    Simulator* outer = current_slot();
    current_slot() = this;
    grid_ = grid;
    threads_ = threads;
    shared_limit_ = shared_limit;
    rng_ = 0x9E3779B97F4A7C15ull ^ uint64_t(++launches_);
    try {
      const int64_t blocks = int64_t(grid.x) * grid.y * grid.z;
      order(block_order_, blocks);
      for (const int64_t b : block_order_) {
        const Dim3 index{int(b % grid.x), int(b / grid.x % grid.y), int(b / grid.x / grid.y)};
        run_block(index, threads, smem_bytes, body);
      }
    } catch (...) {
      current_slot() = outer;
      throw;
    }
    current_slot() = outer;
  }

  // The simulator running a block now (null outside launch).
  static Simulator* current() { return current_slot(); }
  int current_tid() const { return current_; }
  Dim3 block_index() const { return block_; }
  Dim3 grid_dim() const { return grid_; }
  int block_threads() const { return threads_; }
  uint8_t* shared_memory() { return smem_.data(); }

  // A static __shared__ array of the running kernel, reached by a thread of the running block
  // (cmake/cuda_sim.cmake adds the call after each declaration; the array itself is a static
  // thread_local, one per kernel, shared by the block's fibers). The first thread of a block to
  // reach it poisons it with 0xFF bytes, as the dynamic memory is; its bytes count with the
  // dynamic ones against the launch's limit, and a block that passes it fails when it ends (a
  // GPU refuses such a launch; the static arrays' sizes are known here only as blocks reach
  // them, so one not reached on the tested paths is not counted).
  void declare_static_shared(void* array, size_t bytes) {
    for (const StaticShared& s : static_shared_) {
      if (s.array == array) return;
    }
    static_shared_.push_back({array, bytes});
    std::memset(array, 0xFF, bytes);
    size_t total = smem_.size() - kGuardBytes;
    for (const StaticShared& s : static_shared_) total += s.bytes;
    if (total > shared_limit_ && shared_overflow_.empty()) {
      shared_overflow_ = "static __shared__ arrays and " +
                         std::to_string(smem_.size() - kGuardBytes) +
                         " bytes of dynamic shared memory take " + std::to_string(total) +
                         " bytes, past the launch's limit of " + std::to_string(shared_limit_) +
                         " (48 KB unless the kernel opted in to more)";
    }
  }

  // Collectives of thread tid (which must be the running fiber).
  void sync(int tid) { yield(tid, Wait::Barrier); }
  uint64_t shuffle(int tid, uint64_t bits, int lane_arg, bool xor_mode) {
    Lane& l = lanes_[size_t(tid)];
    l.shfl_in = bits;
    l.shfl_arg = lane_arg;
    l.shfl_xor = xor_mode;
    yield(tid, Wait::Shfl);
    return l.shfl_out;
  }
  void mma(int tid, float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16) {
    Lane& l = lanes_[size_t(tid)];
    std::memcpy(l.a, a, sizeof l.a);
    std::memcpy(l.b, b, sizeof l.b);
    std::memcpy(l.d, d, sizeof l.d);
    l.bf16 = bf16;
    yield(tid, Wait::Mma);
    std::memcpy(d, l.d, sizeof l.d);
  }

  // ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16: lanes 8m..8m+7 name the 16-byte
  // rows of matrix m (16-byte aligned, in shared memory); lane i receives, of each matrix, row
  // i/4, elements 2(i%4) and 2(i%4)+1; with .trans, column i/4, rows 2(i%4) and 2(i%4)+1 (the
  // matrix read column-major; PTX ISA, "Warp-level matrix load instruction: ldmatrix").
  void ldmatrix(int tid, uint32_t* r, int count, const uint16_t* row, bool trans = false) {
    Lane& l = lanes_[size_t(tid)];
    l.ldsm_row = row;
    l.ldsm_count = count;
    l.ldsm_trans = trans;
    yield(tid, Wait::Ldsm);
    for (int m = 0; m < count; ++m) r[m] = l.ldsm_out[m];
  }

  // cp.async.cg.shared.global [dst], [src], 16 of thread tid: performed now (the earliest
  // moment a GPU may complete it) under the reversed and shuffled schedules; in order, by the
  // thread's cp_async_wait that covers the group cp_async_commit puts it in (the latest). dst
  // 16-byte aligned in shared memory, src 16-byte aligned.
  void cp_async16(int tid, void* dst, const void* src) {
    uint8_t* d = static_cast<uint8_t*>(dst);
    if (d < smem_.data() || d + 16 > smem_.data() + smem_.size() - kGuardBytes) {
      fail("cp.async to an address outside shared memory");
    }
    if ((uintptr_t(d - smem_.data()) | reinterpret_cast<uintptr_t>(src)) & 15) {
      fail("cp.async of 16 bytes from or to an address not 16-byte aligned");
    }
    const bool now = schedule() != Schedule::InOrder;
    if (now) std::memcpy(d, src, 16);
    lanes_[size_t(tid)].async_open.push_back({d, static_cast<const uint8_t*>(src), now});
    ++async_copies;
  }
  void cp_async_commit(int tid) {
    Lane& l = lanes_[size_t(tid)];
    l.async_groups.push_back(std::move(l.async_open));
    l.async_open.clear();
  }
  // cp.async.wait_group pending: completes all but the `pending` most recent groups.
  void cp_async_wait(int tid, int pending) {
    Lane& l = lanes_[size_t(tid)];
    while (l.async_groups.size() > size_t(pending)) {
      for (const AsyncCopy& c : l.async_groups.front()) {
        if (!c.done) std::memcpy(c.dst, c.src, 16);
      }
      l.async_groups.erase(l.async_groups.begin());
    }
  }

  // First bad mask value an execution-policy body reported (index, value), or index -1.
  int64_t bad_mask_index = -1;
  int bad_mask_value = 0;
  int64_t mma_count = 0;  // warp-wide mma instructions performed
  int64_t async_copies = 0;  // cp.async copies issued

 private:
  friend class SimThread;
  enum class Wait { Running, Barrier, Shfl, Mma, Ldsm, Done };
  static constexpr size_t kStackBytes = size_t(128) << 10;
  static constexpr size_t kGuardBytes = 4096;

  struct AsyncCopy {
    uint8_t* dst;
    const uint8_t* src;
    bool done;  // performed when issued
  };
  struct StaticShared {
    void* array;
    size_t bytes;
  };
  struct Lane {
    FiberContext ctx;
    std::vector<char> stack;
    Wait wait = Wait::Running;
    uint64_t shfl_in = 0, shfl_out = 0;
    int shfl_arg = 0;
    bool shfl_xor = false;
    uint32_t a[4] = {}, b[2] = {};
    float d[4] = {};
    bool bf16 = true;
    const uint16_t* ldsm_row = nullptr;
    int ldsm_count = 0;
    bool ldsm_trans = false;
    uint32_t ldsm_out[4] = {};
    std::vector<AsyncCopy> async_open;                // cp.async issued since the last commit
    std::vector<std::vector<AsyncCopy>> async_groups;  // committed, not waited for; oldest first
  };

  static Schedule& schedule_slot() {
    static Schedule s = schedule_from_env();
    return s;
  }

  // out = 0..n-1 in the schedule's order.
  void order(std::vector<int64_t>& out, int64_t n) {
    out.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = i;
    if (schedule() == Schedule::Reversed) {
      std::reverse(out.begin(), out.end());
    } else if (schedule() == Schedule::Shuffled) {
      for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates with xorshift64
        rng_ ^= rng_ << 13;
        rng_ ^= rng_ >> 7;
        rng_ ^= rng_ << 17;
        std::swap(out[size_t(i)], out[size_t(rng_ % uint64_t(i + 1))]);
      }
    }
  }

  static Simulator*& current_slot() {
    static thread_local Simulator* s = nullptr;
    return s;
  }
  static void fiber_entry() {
    Simulator* sim = current_slot();
    const int tid = sim->current_;
    sim->body_(SimThread(sim, tid), sim->smem_.data());
    Lane& lane = sim->lanes_[size_t(tid)];
    lane.wait = Wait::Done;
    fiber_switch(lane.ctx, sim->scheduler_);  // never resumed
  }

  void yield(int tid, Wait w) {
    Lane& lane = lanes_[size_t(tid)];
    lane.wait = w;
    fiber_switch(lane.ctx, scheduler_);
  }

  void run_block(Dim3 block, int threads, size_t smem_bytes, const Body& body) {
    block_ = block;
    body_ = body;
    smem_.assign(smem_bytes + kGuardBytes, 0xFF);
    static_shared_.clear();
    shared_overflow_.clear();
    if (lanes_.size() < size_t(threads)) lanes_.resize(size_t(threads));
    for (int t = 0; t < threads; ++t) {
      Lane& lane = lanes_[size_t(t)];
      lane.wait = Wait::Running;
      lane.async_open.clear();
      lane.async_groups.clear();
      if (lane.stack.empty()) lane.stack.resize(kStackBytes);
      fiber_prepare(lane.ctx, lane.stack.data(), lane.stack.size(), &Simulator::fiber_entry);
    }
    const int warps = (threads + 31) / 32;
    for (;;) {
      if (schedule() == Schedule::InOrder) {
        run_fibers(0, threads);  // lockstep: every fiber to its next collective
      } else {
        // Warps drift apart between barriers on a GPU: each warp, in the schedule's order, runs
        // through its own shuffles and mmas until it waits at a barrier or exits, before the
        // next warp starts.
        order(warp_order_, warps);
        for (const int64_t w : warp_order_) {
          do {
            run_fibers(int(w) * 32, std::min(int(w) * 32 + 32, threads));
          } while (resolve_warp(int(w), threads));
        }
      }
      int done = 0, at_barrier = 0;
      for (int t = 0; t < threads; ++t) {
        done += lanes_[size_t(t)].wait == Wait::Done;
        at_barrier += lanes_[size_t(t)].wait == Wait::Barrier;
      }
      if (done == threads) break;
      bool progressed = false;
      if (at_barrier == threads) {
        for (int t = 0; t < threads; ++t) lanes_[size_t(t)].wait = Wait::Running;
        progressed = true;
      } else if (at_barrier > 0 && at_barrier + done == threads) {
        fail("a __syncthreads that exited threads never reach");
      }
      for (int w = 0; w * 32 < threads; ++w) progressed |= resolve_warp(w, threads);
      if (!progressed) fail("no collective can complete (divergent warp or barrier)");
    }
    for (size_t i = smem_bytes; i < smem_.size(); ++i) {
      if (smem_[i] != 0xFF) fail("write past the end of shared memory");
    }
    if (!shared_overflow_.empty()) fail(shared_overflow_);
    for (int t = 0; t < threads; ++t) {  // a copy nobody waited for was a load nobody used
      const Lane& lane = lanes_[size_t(t)];
      bool pending = !lane.async_open.empty();
      for (const std::vector<AsyncCopy>& group : lane.async_groups) pending |= !group.empty();
      if (pending) fail("cp.async copies that the thread never waited for");
    }
  }

  // Runs every runnable fiber of threads [begin, end) to its next collective, in the schedule's
  // order.
  void run_fibers(int begin, int end) {
    order(thread_order_, end - begin);
    for (const int64_t i : thread_order_) {
      const size_t t = size_t(begin + i);
      if (lanes_[t].wait != Wait::Running) continue;
      current_ = int(t);
      fiber_switch(scheduler_, lanes_[t].ctx);
    }
  }

  // Performs warp w's collective when all 32 lanes wait at the same kind.
  bool resolve_warp(int w, int threads) {
    Lane* lanes = &lanes_[size_t(w) * 32];
    const Wait kind = lanes[0].wait;
    if (kind != Wait::Shfl && kind != Wait::Mma && kind != Wait::Ldsm) return false;
    if (threads - 32 * w < 32) fail("a whole-warp collective in a partial warp");
    for (int i = 1; i < 32; ++i) {
      if (lanes[i].wait != kind) return false;
    }
    if (kind == Wait::Shfl) {
      for (int i = 0; i < 32; ++i) {
        if (lanes[i].shfl_xor != lanes[0].shfl_xor) fail("lanes mix xor and indexed shuffles");
        const int src = lanes[i].shfl_xor ? (i ^ lanes[i].shfl_arg) : lanes[i].shfl_arg;
        if (src < 0) fail("shuffle from a negative lane");
        lanes[i].shfl_out = lanes[src % 32].shfl_in;
      }
    } else if (kind == Wait::Mma) {
      perform_mma(lanes);
    } else {
      perform_ldmatrix(lanes);
    }
    for (int i = 0; i < 32; ++i) lanes[i].wait = Wait::Running;
    return true;
  }

  void perform_ldmatrix(Lane* lanes) {
    const int count = lanes[0].ldsm_count;
    const bool trans = lanes[0].ldsm_trans;
    if (count != 1 && count != 2 && count != 4) fail("ldmatrix of " + std::to_string(count) + " matrices");
    const uint8_t* smem_begin = smem_.data();
    const uint8_t* smem_end = smem_.data() + smem_.size() - kGuardBytes;
    for (int i = 0; i < 32; ++i) {
      if (lanes[i].ldsm_count != count) fail("lanes disagree on ldmatrix's matrix count");
      if (lanes[i].ldsm_trans != trans) fail("lanes disagree on ldmatrix's .trans");
    }
    for (int m = 0; m < count; ++m) {
      for (int r = 0; r < 8; ++r) {  // the row addresses lanes 8m.. name: aligned, in shared memory
        const uint8_t* row = reinterpret_cast<const uint8_t*>(lanes[8 * m + r].ldsm_row);
        if (reinterpret_cast<uintptr_t>(row) % 16 != 0) fail("ldmatrix row not 16-byte aligned");
        if (row < smem_begin || row + 16 > smem_end) fail("ldmatrix row outside shared memory");
      }
    }
    for (int i = 0; i < 32; ++i) {
      for (int m = 0; m < count; ++m) {
        uint32_t v;
        if (trans) {  // column i/4 of rows 2(i%4) and 2(i%4)+1
          const uint16_t lo = lanes[8 * m + 2 * (i % 4)].ldsm_row[i / 4];
          const uint16_t hi = lanes[8 * m + 2 * (i % 4) + 1].ldsm_row[i / 4];
          v = uint32_t(lo) | (uint32_t(hi) << 16);
        } else {
          std::memcpy(&v, lanes[8 * m + i / 4].ldsm_row + 2 * (i % 4), sizeof v);
        }
        lanes[i].ldsm_out[m] = v;
      }
    }
  }

  // D = A B + C for mma.m16n8k16 (f32 accumulators), operands from the lanes' registers.
  void perform_mma(Lane* lanes) {
    const bool bf16 = lanes[0].bf16;
    auto widen = [bf16](uint32_t reg, int half) {
      const uint16_t h = static_cast<uint16_t>(reg >> (16 * half));
      return bf16 ? cuda::bf16_bits_to_f32(h) : cuda::f16_bits_to_f32(h);
    };
    double A[16][16], B[16][8], C[16][8];
    for (int lane = 0; lane < 32; ++lane) {
      const Lane& l = lanes[lane];
      if (l.bf16 != bf16) fail("lanes disagree on the mma's operand type");
      const int g = lane >> 2, t = lane & 3;
      for (int i = 0; i < 8; ++i) {  // a0..a7: registers a[i/2], halves i%2
        const int r = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
        const int c = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
        A[r][c] = widen(l.a[i / 2], i & 1);
      }
      for (int i = 0; i < 4; ++i) {  // b0..b3
        const int r = 2 * t + (i & 1) + (i >= 2 ? 8 : 0);
        B[r][g] = widen(l.b[i / 2], i & 1);
      }
      for (int i = 0; i < 4; ++i) C[i < 2 ? g : g + 8][2 * t + (i & 1)] = l.d[i];
    }
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane >> 2, t = lane & 3;
      for (int i = 0; i < 4; ++i) {
        const int r = i < 2 ? g : g + 8, c = 2 * t + (i & 1);
        double acc = C[r][c];
        for (int kk = 0; kk < 16; ++kk) acc += A[r][kk] * B[kk][c];
        lanes[lane].d[i] = static_cast<float>(acc);
      }
    }
    ++mma_count;
  }

  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("simt: block (" + std::to_string(block_.x) + "," +
                             std::to_string(block_.y) + "," + std::to_string(block_.z) + "): " + what);
  }

  Dim3 block_, grid_;
  int threads_ = 0;
  Body body_;
  std::vector<uint8_t> smem_;
  size_t shared_limit_ = kMaxSharedBytes;
  std::vector<StaticShared> static_shared_;  // the running block's, in the order reached
  std::string shared_overflow_;             // why the running block passes its limit, or ""
  std::vector<Lane> lanes_;
  FiberContext scheduler_;
  int current_ = 0;
  std::vector<int64_t> block_order_, warp_order_, thread_order_;
  uint64_t rng_ = 0;       // the shuffled schedule's state
  int64_t launches_ = 0;   // seeds each launch's permutations
};

inline int SimThread::block_x() const { return sim_->block_.x; }
inline int SimThread::block_y() const { return sim_->block_.y; }
inline int SimThread::block_z() const { return sim_->block_.z; }
inline void SimThread::sync() const { sim_->sync(tid_); }
inline float SimThread::shfl_xor(float v, int mask) const {
  return cuda::bits_float(uint32_t(sim_->shuffle(tid_, cuda::float_bits(v), mask, true)));
}
inline void SimThread::mma(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16) const {
  sim_->mma(tid_, d, a, b, bf16);
}
inline void SimThread::ldmatrix(uint32_t* r, int count, const uint16_t* row) const {
  sim_->ldmatrix(tid_, r, count, row);
}
inline void SimThread::ldmatrix_trans(uint32_t r[2], const uint16_t* row) const {
  sim_->ldmatrix(tid_, r, 2, row, true);
}
inline void SimThread::cp_async16(void* smem_dst, const void* src) const {
  sim_->cp_async16(tid_, smem_dst, src);
}
inline void SimThread::cp_async_commit() const { sim_->cp_async_commit(tid_); }
inline void SimThread::cp_async_wait(int pending) const { sim_->cp_async_wait(tid_, pending); }
inline void SimThread::report_bad_mask(const cuda::AttentionGeometry&, int64_t index,
                                       int value) const {
  if (sim_->bad_mask_index < 0) {
    sim_->bad_mask_index = index;
    sim_->bad_mask_value = value;
  }
}

}  // namespace simt
}  // namespace s2s
