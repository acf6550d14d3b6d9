// linear: y = x W^T + b (torch nn.Linear), with W stored (out,in) as PyTorch does or (in,out)
// as GPT-2's Conv1D does; W in f32, or bf16: a frozen base weight under LoRA, or the bf16
// compute copy of a trained fp32 master weight (Param::compute), whose f32 gradient is computed
// from bf16-rounded operands with fp32 accumulation; or f16, the same for the fp16 compute copy
// (torch.autocast(float16)'s recipe: fp16 operands, fp32 accumulation and gradients).
// Forward, backward (through s2s::gemm_f32 / gemm_bf16_rounding / gemm_f16_rounding, and gemv
// for a few f32/bf16 rows) and reference loops.
// Legend: N rows = B*T (x may be (N,IC) or (B,T,IC); y has the same leading dims),
//         IC in_features, OC out_features.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// How the weight is stored. OutIn: (OC, IC), torch.nn.Linear.weight. InOut: (IC, OC),
// transformers' Conv1D (GPT-2 c_attn, c_proj, c_fc).
enum class WeightLayout : uint8_t { OutIn = 0, InOut = 1 };

// out (N,OC) = inp (N,IC) @ W^T + bias (OC,). out is overwritten (not accumulated).
//   inp f32 contiguous; out f32 contiguous with inp's leading dims and last dim OC, or a 2-D
//   (N,OC) view whose rows are padded (unit column stride, row stride >= OC: the chunked loss's
//   logits laid out at Backend::aligned_row_stride); the pads are not written. With a 16-bit
//   weight out may be in its dtype instead: the f32 values rounded to nearest even (for an
//   output only 16-bit consumers read: nn::linear_split's q, k, v on a GPU).
//   weight f32, bf16 or f16, (OC,IC) or (IC,OC) per layout: contiguous, or a slice of a wider
//   weight's rows or columns (a 2-D view with the whole matrix's row stride: a split's part).
//   With a bf16 (f16) weight, inp is rounded to bf16 (f16) as the GEMM packs it
//   (gemm_bf16_rounding / gemm_f16_rounding; fp32 accumulation).
//   bias (OC,) f32, or data == nullptr for no bias.
void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                    const Tensor& bias, WeightLayout layout = WeightLayout::OutIn);

// ACCUMULATES (+=; the caller zeroes):
//   dinp    (N,IC) += dout @ W             (bf16 / f16 weight: dout rounded to the weight's format)
//   dweight (OC,IC) += dout^T @ inp        (InOut: (IC,OC) += inp^T @ dout)
//   dbias   (OC,)  += sum over rows of dout (one thread per column block, rows in order)
// Each gradient with data == nullptr is not needed and skipped. inp is read only for dweight
// and may then be a null tensor. dweight is always f32 with the weight's shape. With a bf16
// weight (the bf16 compute path: the weight is the bf16 copy of an fp32 master whose gradient
// this is) dout and inp are rounded to bf16 (round to nearest even) and gemm_bf16 accumulates
// in fp32 into dweight (beta = 1): the mixed-precision recipe of torch.autocast(bfloat16). An
// f16 weight does the same with fp16 rounding (f32_to_f16; gemm_f16_rounding), dout still f32:
// a dout beyond fp16's range rounds to +-Inf, so dinp and dweight get Inf/NaN, which the
// dynamic loss scaler detects. dbias is summed from the fp32 dout for every weight dtype.
// overwrite_dinp = true: dinp is written (=, gemm beta 0; it may hold garbage) instead of
// accumulated; dweight and dbias always accumulate.
// dout may be bf16 with a bf16 weight and no dbias: the values the rounding would produce,
// already rounded by the gradient's writer (the same products, half the bytes to read). There
// is no f16 dout: an f16 weight takes an f32 dout. dout, like out, may be a 2-D view with padded
// rows (its pads are not read).
void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                     const Tensor& dout, const Tensor& inp, const Tensor& weight,
                     WeightLayout layout = WeightLayout::OutIn, bool overwrite_dinp = false);

// Plain triple loops in double (a bf16 / f16 weight path rounds inp / dout to bf16 / f16
// first, for dinp and dweight alike, exactly as the fast path does): the test oracles.
void linear_forward_reference(const Tensor& out, const Tensor& inp, const Tensor& weight,
                              const Tensor& bias, WeightLayout layout = WeightLayout::OutIn);
void linear_backward_reference(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                               const Tensor& dout, const Tensor& inp, const Tensor& weight,
                               WeightLayout layout = WeightLayout::OutIn);

}  // namespace s2s
