// Model::set_compute_dtype: marks the linear layers' weights for bf16 compute copies (or clears
// them). The copies themselves are the ParamStore's (nn/param.h); nn::linear uses them.
#include "s2s/models/model.h"

namespace s2s {

const char* compute_dtype_name(ComputeDType dtype) {
  return dtype == ComputeDType::BF16 ? "bfloat16" : "float32";
}

void Model::set_compute_dtype(ComputeDType dtype) {
  S2S_REQUIRE(dtype == ComputeDType::F32 || dtype == ComputeDType::BF16, code::kArgument,
              "set_compute_dtype", "expected F32 (0) or BF16 (1), got ", static_cast<int>(dtype));
  const bool bf16 = dtype == ComputeDType::BF16;
  for (const LinearModule& m : linear_modules()) {
    Param* w = m.weights->weight;
    if (w->compute_bf16 != bf16) params_.set_compute_bf16(*w, bf16);  // tied head: once
  }
  compute_dtype_ = dtype;
}

}  // namespace s2s
