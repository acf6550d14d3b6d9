// embedding: token (and optional learned position) lookup, out[b,t] = wte[ids[b,t]]
// (+ wpe[pos[b,t]]), as GPT-2's wte/wpe, Llama's embed_tokens, T5's shared; forward, backward
// (deterministic scatter-add) and reference loops.
// Legend: B batch, T time, C channels, V vocab, P position-table rows (n_positions).
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// out (B,T,C) f32 = wte[ids] + wpe[pos].
//   ids: B*T int32 token ids, row-major (b, t), count num_ids == B*T; each in [0, V), else
//        S2S_ARGUMENT naming the index and the value.
//   wte (V,C): f32, bf16 or f16 (a frozen table may stay in 16 bits; rows are widened to f32).
//   wpe (P,C): same dtypes, or data == nullptr for no position table (Llama, T5).
//   pos: B*T int32 positions in [0, P) (count num_pos == B*T), or nullptr / num_pos == 0 for the
//        default 0..T-1 in every batch row. Ignored when there is no wpe.
void embedding_forward(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                       const int32_t* ids, int64_t num_ids, const int32_t* pos = nullptr,
                       int64_t num_pos = 0);

// dwte (V,C) += scatter of dout (B,T,C) rows by ids; dwpe (P,C) += scatter by positions.
// ACCUMULATES; either gradient with data == nullptr is skipped (a frozen table). Both f32.
// Deterministic and independent of the thread count: threads own channel slices, and within
// a slice tokens are added in (b, t) order.
void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                        const int32_t* ids, int64_t num_ids, const int32_t* pos = nullptr,
                        int64_t num_pos = 0);

// Plain loops: the test oracles (same arguments and semantics).
void embedding_forward_reference(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                                 const int32_t* ids, int64_t num_ids,
                                 const int32_t* pos = nullptr, int64_t num_pos = 0);
void embedding_backward_reference(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                  const int32_t* ids, int64_t num_ids,
                                  const int32_t* pos = nullptr, int64_t num_pos = 0);

}  // namespace s2s
