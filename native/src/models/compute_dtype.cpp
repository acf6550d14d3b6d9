// Model::set_compute_dtype: marks the linear layers' weights for bf16 / f16 compute copies (or
// clears them). The copies themselves are the ParamStore's (nn/param.h); nn::linear uses them.
#include "s2s/models/model.h"

namespace s2s {

const char* compute_dtype_name(ComputeDType dtype) {
  switch (dtype) {
    case ComputeDType::BF16: return "bfloat16";
    case ComputeDType::F16: return "float16";
    default: return "float32";
  }
}

void Model::set_compute_dtype(ComputeDType dtype) {
  S2S_REQUIRE(dtype == ComputeDType::F32 || dtype == ComputeDType::BF16 ||
                  dtype == ComputeDType::F16,
              code::kArgument, "set_compute_dtype", "expected F32 (0), BF16 (1) or F16 (2), got ",
              static_cast<int>(dtype));
  const DType copy = dtype == ComputeDType::BF16  ? DType::BF16
                     : dtype == ComputeDType::F16 ? DType::F16
                                                  : DType::F32;
  for (const LinearModule& m : linear_modules()) {
    params_.set_compute_dtype(*m.weights->weight, copy);  // tied head: the second call is a no-op
  }
  compute_dtype_ = dtype;
}

}  // namespace s2s
