// The host's checks of a loss's labels, made before anything is queued (as the CPU's
// cross-entropy makes them; a device's kernels would report a bad one only at the next
// synchronisation), shared by nn::cross_entropy and nn::linear_cross_entropy.
#pragma once
#include <cstdint>

#include "s2s/error.h"

namespace s2s {
namespace nn {

// Rows whose label is not ignore_index.
inline int64_t counted_labels(const int32_t* labels, int64_t n, int32_t ignore_index) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += labels[i] != ignore_index;
  return c;
}

// Every label in [0, V) or ignore_index (S2S_ARGUMENT naming `op` and the first bad one);
// returns the counted rows.
inline int64_t check_and_count_labels(const int32_t* labels, int64_t n, int64_t V,
                                      int32_t ignore_index, const char* op) {
  for (int64_t i = 0; i < n; ++i) {
    const int32_t y = labels[i];
    S2S_REQUIRE(y == ignore_index || (y >= 0 && y < V), code::kArgument, op, "expected labels[",
                i, "] in [0, ", V, ") or == ignore_index (", ignore_index, "), got ", y);
  }
  return counted_labels(labels, n, ignore_index);
}

}  // namespace nn
}  // namespace s2s
