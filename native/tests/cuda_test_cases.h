// Test cases that need a CUDA device: CUDA_TEST(name) { ... } registers a case that joins the
// harness only where a device exists; elsewhere the executable says why it skipped and runs 0
// cases. End the file with S2S_CUDA_TESTS_JOIN_WHEN_DEVICE_PRESENT("what") (static objects of one
// file are constructed in order, so the cases are all registered by then). Builds without the
// CUDA backend use S2S_CUDA_TESTS_NOT_BUILT() instead.
#pragma once
#include <cstdio>
#include <vector>

#include "harness.h"
#include "s2s/device.h"

namespace s2s_test {

inline std::vector<Case>& cuda_cases() {
  static std::vector<Case> cases;
  return cases;
}

struct CudaRegistrar {
  CudaRegistrar(const char* name, void (*fn)()) { cuda_cases().push_back({name, fn}); }
};

struct JoinWhenDevicePresent {
  explicit JoinWhenDevicePresent(const char* what) {
    const s2s::CudaStatus s = s2s::cuda_status();
    if (s.devices.empty()) {
      std::printf("skipped: no CUDA device (%s); %zu %s not run\n", s.problem.c_str(),
                  cuda_cases().size(), what);
      return;
    }
    for (const Case& c : cuda_cases()) registry().push_back(c);
  }
};

}  // namespace s2s_test

#define CUDA_TEST(name)                                              \
  static void name();                                                \
  static s2s_test::CudaRegistrar name##_cuda_registrar(#name, name); \
  static void name()

#define S2S_CUDA_TESTS_JOIN_WHEN_DEVICE_PRESENT(what) \
  static s2s_test::JoinWhenDevicePresent s2s_join_when_device_present(what)

#define S2S_CUDA_TESTS_NOT_BUILT()                                                              \
  static const int s2s_cuda_not_built =                                                         \
      std::printf("skipped: no CUDA device (CUDA backend not built into this binary)\n")
