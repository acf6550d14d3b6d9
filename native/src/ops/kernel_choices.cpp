// kernel_choices(): one line per kernel family, naming what the active ISA dispatches to.
#include "s2s/kernels.h"

#include "ops/act_kernels.h"
#include "s2s/gemm.h"

namespace s2s {

std::vector<std::pair<std::string, std::string>> kernel_choices() {
  return {
      {"gemm_f32", gemm_kernel_name(DType::F32)},
      {"gemm_bf16", gemm_kernel_name(DType::BF16)},
      {"gemm_f16", gemm_kernel_name(DType::F16)},
      {"activations", act_kernels().name},
  };
}

}  // namespace s2s
