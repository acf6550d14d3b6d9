// lora_merge: folds a LoRA adapter into its base weight, W += scaling * (B @ A), as PEFT's
// LoraLayer.merge does (get_delta_weight: transpose(B @ A, fan_in_fan_out) * scaling). There is
// no backward: merging happens after training, on frozen weights.
// Legend: OC out_features, IC in_features, R the LoRA rank.
//   A (R,IC) and B (OC,R) are nn.Linear weights whatever the base layout;
//   W is (OC,IC) for WeightLayout::OutIn (nn.Linear) and (IC,OC) for InOut (GPT-2 Conv1D,
//   PEFT's fan_in_fan_out), where the delta is added transposed.
#pragma once
#include "s2s/ops/linear.h"
#include "s2s/tensor.h"

namespace s2s {

// weight += scaling * (B @ A) (OutIn) or scaling * (B @ A)^T (InOut), in place, through one
// s2s::gemm_f32 call (alpha = scaling, beta = 1). All three f32 and contiguous; the shapes must
// agree as above (S2S_SHAPE naming the tensor otherwise).
void lora_merge_forward(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                        WeightLayout layout);

// Plain loops (double accumulation of B @ A, then scaled and added in fp32): the test oracle.
void lora_merge_reference(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                          WeightLayout layout);

}  // namespace s2s
