// What a bench's steps queued on the simulated GPU, per step, as JSON (simulator builds only:
// S2S_SIMT_SIM). The counts do not depend on the channel count, so a small model of the real
// depth gives the real model's launches, GEMMs and copies in seconds.
#pragma once
#if S2S_SIMT_SIM
#include <cstdio>
#include <map>
#include <string>

#include "cuda_runtime.h"

namespace s2s_bench {

// ",\"work_per_step\":{...}": (after - before) / steps. With `detail`, launches by kernel and
// GEMMs by shape too.
inline std::string queued_work_json(const s2s::simt::QueuedWork& before,
                                    const s2s::simt::QueuedWork& after, double steps,
                                    bool detail) {
  auto per_step = [steps](int64_t a, int64_t b) { return double(a - b) / steps; };
  char buf[512];
  std::snprintf(buf, sizeof buf,
                ",\"work_per_step\":{\"launches\":%.1f,\"gemms\":%.1f,"
                "\"unaligned_gemms\":%.1f,\"uploads\":%.1f,"
                "\"pageable_uploads\":%.1f,\"downloads\":%.1f,\"device_copies\":%.1f,\"device_copy_bytes\":%.0f,"
                "\"fills\":%.1f,\"fill_bytes\":%.0f,\"graph_launches\":%.1f",
                per_step(after.launches, before.launches),
                per_step(after.matmuls, before.matmuls),
                per_step(after.unaligned_matmuls, before.unaligned_matmuls),
                per_step(after.uploads, before.uploads),
                per_step(after.pageable_uploads, before.pageable_uploads),
                per_step(after.downloads, before.downloads),
                per_step(after.device_copies, before.device_copies),
                per_step(after.device_copy_bytes, before.device_copy_bytes),
                per_step(after.fills, before.fills), per_step(after.fill_bytes, before.fill_bytes),
                per_step(after.graph_launches, before.graph_launches));
  std::string s = buf;
  auto counts = [&](const char* key, const std::map<std::string, int64_t>& a,
                    const std::map<std::string, int64_t>& b) {
    s += std::string(",\"") + key + "\":{";
    bool first = true;
    for (const auto& [name, n] : a) {
      const auto it = b.find(name);
      const double d = per_step(n, it == b.end() ? 0 : it->second);
      if (d == 0) continue;
      std::snprintf(buf, sizeof buf, "%s\"%s\":%g", first ? "" : ",", name.c_str(), d);
      s += buf;
      first = false;
    }
    s += "}";
  };
  if (detail) {
    counts("kernels", after.launches_by_kernel, before.launches_by_kernel);
    counts("gemms_by_shape", after.matmuls_by_shape, before.matmuls_by_shape);
  }
  return s + "}";
}

}  // namespace s2s_bench
#endif
