// A persistent pool of worker threads and the one parallel primitive ops use.
//
// parallel_for splits [0, n) into contiguous chunks by a fixed rule that depends only on n,
// the grain and the thread count, never on timing: the same inputs give the same split, so any
// op whose chunks write disjoint outputs is bit-deterministic at a fixed thread count.
// Work smaller than one grain per thread runs on fewer threads (on tiny work one thread beats
// two). Nested calls from inside a worker run serially on that worker.
#pragma once
#include <cstdint>
#include <functional>

namespace s2s {

int num_threads();            // the pool's size (including the calling thread)
void set_num_threads(int n);  // n >= 1; default: hardware cores, or S2S_NUM_THREADS

// Calls fn(begin, end) on disjoint chunks covering [0, n). `grain` is the smallest chunk
// worth a thread of its own. Chunk i of T goes to thread i. Exceptions thrown by fn are
// rethrown on the calling thread (the first one, by chunk index).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// The number of chunks parallel_for would use for (n, grain), for callers that need per-chunk
// scratch (e.g. partial sums reduced afterwards in a fixed order).
int plan_threads(int64_t n, int64_t grain);

// Runs fn(t) for t in [0, nthreads) with one call per thread, nthreads <= num_threads().
// Called from inside a pool task it runs the calls one after another on that thread, so code that
// synchronises its threads (a barrier) must check in_parallel_region() first.
void parallel_run(int nthreads, const std::function<void(int)>& fn);

// True on a thread that is running a parallel_for / parallel_run task (where nested calls run
// serially).
bool in_parallel_region();

}  // namespace s2s
