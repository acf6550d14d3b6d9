// The persistent thread pool behind parallel_for.
//
// Workers sleep on a condition variable between jobs; a job is published by bumping a
// generation counter. Chunk boundaries are computed from (n, grain, threads) alone, so the split
// never depends on which thread wakes first. Worker i always runs chunk i.
#include "s2s/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "s2s/error.h"

namespace s2s {

namespace {

thread_local bool t_inside_pool = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

int default_threads() {
  if (const char* env = std::getenv("S2S_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop_workers(); }

  int size() const { return size_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    size_ = n;
    stopping_ = false;
    // New workers must not mistake the last finished job for a new one.
    const uint64_t current = generation_.load();
    for (int i = 1; i < n; ++i) {
      workers_.emplace_back([this, i, current] { worker_loop(i, current); });
    }
  }

  // Runs fn(t) for t in [0, nthreads); the caller runs t = 0.
  void run(int nthreads, const std::function<void(int)>& fn) {
    if (nthreads <= 1 || t_inside_pool) {
      for (int t = 0; t < nthreads; ++t) fn(t);
      return;
    }
    // One job at a time: concurrent callers (several JS workers) queue here.
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    std::vector<std::exception_ptr> errors(nthreads);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      job_threads_ = nthreads;
      job_errors_ = &errors;
      pending_.store(nthreads - 1, std::memory_order_release);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    t_inside_pool = true;
    try {
      fn(0);
    } catch (...) {
      errors[0] = std::current_exception();
    }
    t_inside_pool = false;
    // Spin briefly (jobs are often microseconds long), then sleep.
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0 && spin < 20000; ++spin) {
      std::this_thread::yield();
    }
    if (pending_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    for (auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
  }

 private:
  void worker_loop(int index, uint64_t seen) {
    t_inside_pool = true;
    for (;;) {
      const std::function<void(int)>* job;
      std::vector<std::exception_ptr>* errors;
      int threads;
      // Ops run back to back (a training step is hundreds of them): spin briefly for the next
      // job before sleeping, so a worker does not start each one a futex wake-up late.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
      for (int i = 0; generation_.load(std::memory_order_acquire) == seen; ++i) {
        if ((i & 63) == 63 && std::chrono::steady_clock::now() > spin_until) break;
        cpu_relax();
      }
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
        if (stopping_) return;
        seen = generation_.load();
        job = job_;
        errors = job_errors_;
        threads = job_threads_;
      }
      if (index < threads) {
        try {
          (*job)(index);
        } catch (...) {
          (*errors)[index] = std::current_exception();
        }
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lock(mutex_);
          done_.notify_one();
        }
      }
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::vector<std::exception_ptr>* job_errors_ = nullptr;
  int job_threads_ = 0;
  std::atomic<uint64_t> generation_{0};  // bumped under mutex_, read without it while spinning
  std::atomic<int> pending_{0};
  bool stopping_ = false;
  int size_ = 1;
};

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) {
  if (n < 1 || n > 1024) {
    fail(code::kArgument, "set_num_threads", "expected 1..1024 threads, got ", n);
  }
  if (n != pool().size()) pool().resize(n);
}

int plan_threads(int64_t n, int64_t grain) {
  if (n <= 0) return 0;
  if (grain < 1) grain = 1;
  int64_t by_work = (n + grain - 1) / grain;
  int64_t t = num_threads();
  return static_cast<int>(by_work < t ? by_work : t);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  const int threads = plan_threads(n, grain);
  if (threads == 0) return;
  if (threads == 1) {
    fn(0, n);
    return;
  }
  // Even split: the first (n % threads) chunks get one extra element.
  const int64_t base = n / threads, extra = n % threads;
  pool().run(threads, [&](int t) {
    const int64_t begin = t * base + (t < extra ? t : extra);
    const int64_t end = begin + base + (t < extra ? 1 : 0);
    if (begin < end) fn(begin, end);
  });
}

bool in_parallel_region() { return t_inside_pool; }

void parallel_run(int nthreads, const std::function<void(int)>& fn) {
  if (nthreads < 1) return;
  if (nthreads > num_threads()) nthreads = num_threads();
  pool().run(nthreads, fn);
}

}  // namespace s2s
