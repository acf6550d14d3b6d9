// nn::attention, nn::rope and nn::t5_position_bias: the attention block's pieces.
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

Var* attention(Graph& g, Var* q, Var* k, Var* v, Var* bias, const uint8_t* key_mask,
               AttentionOptions options, DType out_dtype) {
  const bool needs_grad = q->requires_grad || k->requires_grad || v->requires_grad ||
                          (bias != nullptr && bias->requires_grad);
  const Tensor& qv = q->value;
  Var* out = g.output(qv.ndim, qv.shape, needs_grad, out_dtype);
  const int64_t B = qv.shape[0], Tq = qv.shape[1], Hq = qv.shape[2], Tk = k->value.shape[1];
  // Dropout on the probabilities only in training, from the graph's Philox stream (one counter
  // per (b, h, i, j), as nn::dropout advances it by one per element).
  if (!g.training || options.dropout_p == 0.0f) {
    options.dropout_p = 0.0f;
  } else {
    options.dropout_seed = g.dropout_key();
    options.dropout_offset = g.dropout_offset;
    g.dropout_offset += static_cast<uint64_t>(B * Hq * Tq * Tk);
  }
  Tensor lse = g.tensor(DType::F32, {B, Hq, Tq});
  const Tensor bias_v = bias ? bias->value : Tensor{};
  const int64_t mask_size = key_mask ? B * Tk : 0;
  g.ops().attention_forward(out->value, lse, qv, k->value, v->value, bias_v, key_mask, mask_size,
                            options);
  if (needs_grad) {
    g.on_backward([&g, q, k, v, bias, out, lse, key_mask, mask_size, options] {
      const Tensor dout = g.grad_if_present(out);
      if (dout.data == nullptr) return;
      Tensor d[3];  // dq, dk, dv: written when fresh (no zero-fill pass); dbias accumulates
      const bool overwrite = g.grads_for_write({q, k, v}, d);
      g.ops().attention_backward(d[0], d[1], d[2], bias ? g.grad(bias) : Tensor{}, dout,
                                 q->value, k->value, v->value, out->value, lse,
                                 bias ? bias->value : Tensor{}, key_mask, mask_size, options,
                                 overwrite);
    });
  }
  return out;
}

DType attention_input_dtype(const Graph& g, const AttentionOptions& options, int64_t head_dim) {
  return g.half_activations ? g.ops().attention_input_dtype(options, head_dim) : DType::F32;
}

DType attention_output_dtype(const Graph& g, const AttentionOptions& options, int64_t head_dim,
                             std::initializer_list<const LinearWeights*> readers) {
  if (!g.half_attention_output) return DType::F32;
  const DType t = attention_input_dtype(g, options, head_dim);
  return t != DType::F32 && matmul_input_dtype(g, readers) == t ? t : DType::F32;
}

Var* rope(Graph& g, Var* x, const int32_t* positions, float theta, DType out) {
  Var* y = g.output(x->value.ndim, x->value.shape, x->requires_grad, out);
  const int64_t num_positions = positions ? x->value.shape[0] * x->value.shape[1] : 0;
  g.ops().rope_forward(y->value, x->value, positions, num_positions, theta);
  if (x->requires_grad) {
    g.on_backward([&g, x, y, positions, num_positions, theta] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      Tensor dx;  // bf16 for a bias-less bf16 q/k projection (Graph::grads_for_write)
      const bool overwrite = g.grads_for_write({x}, &dx, /*bf16_ok=*/true);
      g.ops().rope_backward(dx, dy, positions, num_positions, theta, overwrite);
    });
  }
  return y;
}

Var* t5_position_bias(Graph& g, Param* table, int64_t Tq, int64_t Tk, bool bidirectional,
                      int64_t max_distance, int64_t q_offset) {
  const int64_t Hq = table->value.shape[1];
  Var* bias = g.output({Hq, Tq, Tk}, g.tracks(table));
  T5RelativePositionOptions o;
  o.bidirectional = bidirectional;
  o.max_distance = max_distance;
  o.q_offset = q_offset;
  g.ops().t5_relative_position_forward(bias->value, table->value, o);
  if (g.tracks(table)) {
    g.on_backward([&g, table, bias, o] {
      const Tensor dbias = g.grad_if_present(bias);
      if (dbias.data != nullptr) g.ops().t5_relative_position_backward(table->grad, dbias, o);
    });
  }
  return bias;
}

}  // namespace nn
}  // namespace s2s
