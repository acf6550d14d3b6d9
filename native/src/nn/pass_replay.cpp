// PassReplay: dry runs, recordings and their replays (s2s/nn/pass_replay.h).
#include "s2s/nn/pass_replay.h"

#include <chrono>

#include "nn/traced_backend.h"

namespace s2s {

namespace {

// Resets g and routes it through a TracedBackend for a scope, and puts the plain routing and
// index uploads back at its end, also when the pass throws.
class Traced {
 public:
  Traced(Graph& g, bool dry, bool upload_indices)
      : g_(g), traced_(*g.backend(), dry) {
    g_.reset();
    g_.route_through(&traced_);
    g_.upload_indices = upload_indices;
  }
  ~Traced() {
    g_.route_through(nullptr);
    g_.upload_indices = true;
  }
  Traced(const Traced&) = delete;
  Traced& operator=(const Traced&) = delete;
  uint64_t fingerprint() const { return traced_.fingerprint(); }

 private:
  Graph& g_;
  TracedBackend traced_;
};

}  // namespace

void PassReplay::set_enabled(bool enabled) {
  enabled_ = enabled;
  if (!enabled) clear();
}

void PassReplay::clear() {
  recordings_.clear();
  have_last_ = false;
  misses_in_a_row_ = 0;
  unrecordable_ = false;
}

uint64_t PassReplay::dry_run(Graph& g, const std::function<void()>& pass) {
  const auto start = std::chrono::steady_clock::now();
  uint64_t fingerprint = 0;
  {
    Traced t(g, /*dry=*/true, /*upload_indices=*/true);
    pass();
    fingerprint = t.fingerprint();
  }
  counts_.dry_run_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return fingerprint;
}

bool PassReplay::record(Graph& g, const std::function<void()>& pass, uint64_t fingerprint) {
  std::unique_ptr<RecordedWork> work;
  uint64_t recorded = 0;
  {
    // The dry run just staged this pass's index arrays; the recorded pass reads them in place.
    Traced t(g, /*dry=*/false, /*upload_indices=*/false);
    work = g.backend()->record(pass);
    recorded = t.fingerprint();
  }
  if (work == nullptr || recorded != fingerprint) {
    unrecordable_ = true;  // nothing of it ran: the caller runs the pass as usual
    return false;
  }
  if (recordings_.size() == kRecordings) recordings_.erase(recordings_.begin());
  recordings_.push_back(Recording{fingerprint, std::move(work)});
  ++counts_.recorded;
  recordings_.back().work->replay();
  ++counts_.replayed;
  return true;
}

void PassReplay::run_as_usual(Graph& g, const std::function<void()>& pass) {
  Traced t(g, /*dry=*/false, /*upload_indices=*/true);
  pass();
  last_ = t.fingerprint();
  have_last_ = true;
  ++counts_.run;
}

bool PassReplay::run(Graph& g, const std::function<void()>& pass) {
  if (!enabled_ || g.backend()->is_host() || unrecordable_ ||
      misses_in_a_row_ >= kMissesBeforeGivingUp) {
    g.reset();
    pass();
    ++counts_.run;
    return false;
  }
  if (have_last_) {
    const uint64_t fingerprint = dry_run(g, pass);
    for (Recording& r : recordings_) {
      if (r.fingerprint == fingerprint) {
        r.work->replay();
        ++counts_.replayed;
        misses_in_a_row_ = 0;
        return true;
      }
    }
    if (fingerprint == last_) {
      misses_in_a_row_ = 0;
      if (record(g, pass, fingerprint)) return true;
    } else {
      ++misses_in_a_row_;
      ++counts_.misses;
    }
  }
  run_as_usual(g, pass);
  return false;
}

}  // namespace s2s
