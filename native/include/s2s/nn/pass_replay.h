// PassReplay: a training micro-step's device work (one batch's forward and backward) recorded
// once (Backend::record: a CUDA graph) and replayed for the micro-steps after it that queue the
// same work, so the host issues one launch where it issued every kernel, copy and GEMM (some
// 1,100 for a 12-layer GPT-2 step, 1,400 for a 30-layer Llama): small models at small batches
// are bound by that host work on a GPU, as PyTorch eager is.
//
// Each pass's host work still runs, dry (TracedBackend): it builds the tape, makes the same
// allocations, uploads the batch's index arrays to the addresses the recording reads, and
// fingerprints every call it would queue. A recording runs only where that fingerprint is the
// one it was recorded with: the same kernels, GEMMs and copies with the same shapes, addresses
// and scalar arguments (the same batch shape and padding pattern, settings and params; dropout's
// seed is read from device memory, Graph::dropout_key, so another seed is another input, not
// other work). Anything else runs as usual, so a replay does what the pass would have done, to
// the bit. A pass is recorded when its dry run's fingerprint is the previous pass's (it
// repeats), up to kRecordings of them (a few padded lengths: the trainer's
// data.pad_to_multiple_of); passes that never repeat (every batch another length) stop the dry
// runs after kMissesBeforeGivingUp in a row. A pass that
// cannot be recorded (it copies to or from the host, or waits, as a loss brought back does)
// is run as usual from then on. Host backends run every pass as usual.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "s2s/nn/graph.h"

namespace s2s {

class PassReplay {
 public:
  static constexpr size_t kRecordings = 8;
  static constexpr int kMissesBeforeGivingUp = 8;

  // Runs `pass` (the forward and backward on g; it sets g's pass settings itself, after the
  // g.reset() this makes) or replays its recording; true when the recording ran. Either way g
  // holds the pass's Vars afterwards (the dry run's, at the same addresses), so the caller reads
  // the loss from them. `pass` may run more than once (dry, recorded, as usual) and must do the
  // same host work each time.
  bool run(Graph& g, const std::function<void()>& pass);

  // Off: every pass runs as usual (tests compare). Dropping the recordings too.
  void set_enabled(bool enabled);
  // Forgets the recordings and the history (a model's params or settings changed wholesale;
  // not needed for correctness: a changed pass does not match).
  void clear();

  struct Counts {
    int64_t run = 0;       // passes run as usual
    int64_t recorded = 0;  // recordings made
    int64_t replayed = 0;  // passes replayed (a recording's first run included)
    int64_t misses = 0;    // dry runs that matched nothing
    // Host time in dry runs: what a replayed micro-step still costs the host (the tape, the
    // allocations, the index uploads, the fingerprint), which the GPU waits for where the host
    // does not run ahead of it.
    double dry_run_seconds = 0;
  };
  const Counts& counts() const { return counts_; }

 private:
  struct Recording {
    uint64_t fingerprint = 0;
    std::unique_ptr<RecordedWork> work;
  };
  uint64_t dry_run(Graph& g, const std::function<void()>& pass);
  bool record(Graph& g, const std::function<void()>& pass, uint64_t fingerprint);
  void run_as_usual(Graph& g, const std::function<void()>& pass);

  bool enabled_ = true;
  bool unrecordable_ = false;  // a capture failed: the pass copies to the host or waits
  int misses_in_a_row_ = 0;
  bool have_last_ = false;
  uint64_t last_ = 0;  // the last pass run as usual
  std::vector<Recording> recordings_;  // oldest first
  Counts counts_;
};

}  // namespace s2s
