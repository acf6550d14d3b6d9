// The GPU benches' CUPTI trace (bench/native/kernel_trace.h) without a GPU: its summary of
// activity records (the GPU's busy time as the union of activities inside the timed steps, time
// per kernel name) on hand-made records, and its kernel names, demangled and cut short.
#include <string>
#include <vector>

#include "../../bench/native/kernel_trace.h"
#include "harness.h"

using s2s_bench::KernelTrace;

namespace {

// The number after "key": in a summary's JSON text.
double field(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::stod(json.substr(at + key.size() + 3));
}

}  // namespace

TEST(kernel_trace_summary_counts_busy_time_once_inside_the_steps) {
  // Two steps of 100 us: [1000, 1100) and [2000, 2100) us, records in ns.
  const uint64_t us = 1000;
  const std::vector<KernelTrace::Window> windows = {{1000 * us, 1100 * us}, {2000 * us, 2100 * us}};
  const std::vector<KernelTrace::Activity> records = {
      {1010 * us, 1030 * us, "gemm"},      // step 1
      {1020 * us, 1040 * us, "gelu"},      // overlaps gemm: 10 us more busy, not 20
      {1090 * us, 1150 * us, "gemm"},      // runs past the step's end: busy to 1100 only
      {1500 * us, 1600 * us, "between"},   // outside both steps: not counted
      {2000 * us, 2050 * us, "[memcpy]"},  // step 2
      {2050 * us, 2060 * us, "gemm"},      // starts where the copy ends
      {900 * us, 1005 * us, "warmup"}};    // started before step 1: not counted
  const std::string json = KernelTrace::summary(records, windows, 0, 2);
  CHECK_MSG(field(json, "steps") == 2, json);
  CHECK_MSG(field(json, "window_ms_per_step") == 0.1, json);
  // Busy: step 1 [1010,1040) + [1090,1100) = 40; step 2 [2000,2060) = 60; 100 us in 200.
  CHECK_MSG(field(json, "gpu_busy_ms_per_step") == 0.05, json);
  CHECK_MSG(field(json, "busy_fraction") == 0.5, json);
  // Ranked by time: gemm 20 + 60 + 10 = 90 us in 3 calls, then the copy (50), then gelu (20),
  // which is past top = 2 and adds to the rest.
  const size_t gemm = json.find("\"name\":\"gemm\""), copy = json.find("\"name\":\"[memcpy]\"");
  CHECK_MSG(gemm != std::string::npos && copy != std::string::npos && gemm < copy, json);
  CHECK_MSG(field(json, "ms_per_step") == 0.045, json);  // the first listed: gemm, 90 / 2
  CHECK_MSG(field(json, "calls_per_step") == 1.5, json);
  CHECK_MSG(json.find("gelu") == std::string::npos, json);
  CHECK_MSG(field(json, "other_kernels_ms_per_step") == 0.01, json);
  CHECK_MSG(json.find("between") == std::string::npos && json.find("warmup") == std::string::npos,
            json);
}

TEST(kernel_trace_names_are_demangled_without_parameters) {
  // void s2s::cuda::(anonymous namespace)::scale_kernel<float, 4>(float*, long)
  const std::string kernel =
      KernelTrace::readable("_ZN3s2s4cuda12_GLOBAL__N_112scale_kernelIfLi4EEEvPfl");
  CHECK_MSG(kernel == "void s2s::cuda::(anonymous namespace)::scale_kernel<float, 4>", kernel);
  // Not mangled (cuBLASLt's kernels): as it is.
  CHECK(KernelTrace::readable("sm90_xmma_gemm_bf16bf16_bf16f32") ==
        "sm90_xmma_gemm_bf16bf16_bf16f32");
  CHECK(KernelTrace::readable(nullptr) == "[unnamed kernel]");
  CHECK(KernelTrace::readable(std::string(300, 'k').c_str()).size() == 160);
  CHECK(s2s_bench::json_string("a\"b\\c\n") == "\"a\\\"b\\\\c\"");
}
