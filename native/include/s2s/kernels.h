// Which implementation each kernel family runs under the active ISA, for `doctor` and bug
// reports: pairs like ("gemm_f32", "avx512 14x32 fp32 fma").
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace s2s {

std::vector<std::pair<std::string, std::string>> kernel_choices();

}  // namespace s2s
