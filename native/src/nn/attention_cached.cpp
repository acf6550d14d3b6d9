// nn::cached_attention, nn::cross_attention and nn::last_position: the layers a model's
// generation forward (Model::forward_cached) composes. Inference only: they need g.no_grad (a
// KV cache is state that a backward pass could not replay) and record nothing on the tape.
// Legend: R rows, T new positions, Hq/Hkv heads, D head dim, C channels.
#include <cstring>

#include "s2s/generate/kv_cache.h"
#include "s2s/nn/functional.h"
#include "s2s/ops/attention.h"

namespace s2s {
namespace nn {

namespace {
void expect_inference(Graph& g, const char* layer) {
  S2S_REQUIRE(g.no_grad, code::kArgument, layer,
              "is inference-only: expected a graph with no_grad set (generation)");
}

// An empty cache taking a whole prompt: the training attention kernel runs on it.
bool is_prefill(const KVCache& cache, int64_t T) { return cache.length() == 0 && T > 1; }
}  // namespace

void expect_cache_on_graph_backend(Graph& g, const KVCache& cache, const char* what) {
  S2S_REQUIRE(cache.on_host() == g.ops().is_host(), code::kArgument, what,
              "expected the KV cache on the graph's backend (", g.ops().name(), ")");
}

std::vector<Var*> split_heads(Graph& g, Var* x, std::initializer_list<int64_t> heads, int64_t D,
                              const KVCache& cache) {
  expect_inference(g, "split_heads");
  const Tensor& xv = x->value;
  int64_t total = 0;
  for (int64_t h : heads) total += h;
  expect_f32(xv, {-1, -1, total * D}, "split_heads", "x");
  const int64_t R = xv.shape[0], T = xv.shape[1], W = xv.shape[2];
  std::vector<Var*> parts;
  if (is_prefill(cache, T)) {
    std::vector<int64_t> widths;
    for (int64_t h : heads) widths.push_back(h * D);
    parts = split_last(g, x, widths);
    size_t i = 0;
    for (int64_t h : heads) {
      parts[i] = g.view(parts[i], {R, T, h, D});
      ++i;
    }
    return parts;
  }
  int64_t col0 = 0;
  for (int64_t h : heads) {
    Tensor view = Tensor::contiguous(xv.f32() + col0, DType::F32, {R, T, h, D});
    view.strides[0] = T * W;  // rows and positions step over the whole fused row
    view.strides[1] = W;
    parts.push_back(g.constant(view));
    col0 += h * D;
  }
  return parts;
}

Var* cached_attention(Graph& g, Var* q, Var* k, Var* v, KVCache& cache, int64_t layer,
                      Var* bias, const AttentionOptions& options) {
  expect_inference(g, "cached_attention");
  expect_cache_on_graph_backend(g, cache, "cached_attention");
  const Tensor& qv = q->value;
  const int64_t R = qv.shape[0], T = qv.shape[1];
  Var* out = g.output(qv.ndim, qv.shape, false);
  const Tensor bias_v = bias ? bias->value : Tensor{};
  const int32_t* begin = cache.key_begin();
  if (is_prefill(cache, T)) {
    // Prompt prefill: the new keys are the whole sequence, so the blockwise training kernel
    // runs on the contiguous k, v (left padding as a key mask); then they enter the cache.
    uint8_t* mask = nullptr;
    for (int64_t r = 0; r < R && mask == nullptr; ++r) {
      if (begin[r] > 0) mask = g.scratch<uint8_t>(size_t(R * T));
    }
    if (mask != nullptr) {
      for (int64_t r = 0; r < R; ++r)
        for (int64_t t = 0; t < T; ++t) mask[r * T + t] = t >= begin[r] ? 1 : 0;
    }
    Tensor lse = g.tensor(DType::F32, {R, qv.shape[2], T});
    g.ops().attention_forward(out->value, lse, qv, k->value, v->value, bias_v,
                              g.indices<uint8_t>(mask, R * T), mask ? R * T : 0, options);
    cache.append(layer, k->value, v->value);
    return out;
  }
  cache.append(layer, k->value, v->value);
  const KVCache::KeyRanges keys = cache.ranges(T);  // uploaded by the step's first layer only
  g.ops().attention_cached_forward(out->value, qv, cache.keys(layer), cache.values(layer),
                                   keys.slot, keys.begin, keys.end, bias_v, options);
  return out;
}

Var* cross_attention(Graph& g, Var* q, KVCache& cache, int64_t layer,
                     const AttentionOptions& options) {
  expect_inference(g, "cross_attention");
  expect_cache_on_graph_backend(g, cache, "cross_attention");
  Var* out = g.output(q->value.ndim, q->value.shape, false);
  AttentionOptions o = options;
  o.causal = false;
  const KVCache::KeyRanges keys = cache.cross_ranges();  // uploaded once per generate call
  g.ops().attention_cached_forward(out->value, q->value, cache.cross_keys(layer),
                                   cache.cross_values(layer), keys.slot, keys.begin, keys.end,
                                   Tensor{}, o);
  return out;
}

Var* t5_decoding_position_bias(Graph& g, Param* table, int64_t T, KVCache& cache,
                               int64_t max_distance) {
  expect_inference(g, "t5_decoding_position_bias");
  expect_cache_on_graph_backend(g, cache, "t5_decoding_position_bias");
  const int64_t Hq = table->value.shape[1];
  Var* bias = g.output({Hq, T, cache.capacity()}, false);
  T5RelativePositionOptions o;
  o.bidirectional = false;
  o.max_distance = max_distance;
  g.ops().t5_relative_position_decoding_forward(bias->value, table->value, cache.ranges(T).end, o);
  return bias;
}

Var* last_position(Graph& g, Var* x) {
  const Tensor& xv = x->value;
  S2S_REQUIRE(xv.ndim == 3, code::kShape, "last_position", "expected x (R,T,C), got ",
              xv.shape_string());
  const int64_t R = xv.shape[0], T = xv.shape[1], C = xv.shape[2];
  if (T == 1) return g.view(x, {R, C});
  Var* y = g.output({R, C}, x->requires_grad);
  g.ops().copy_columns(y->value.f32(), xv.f32(), R, T * C, (T - 1) * C, C);  // row r's last
  if (x->requires_grad) {
    S2S_REQUIRE(g.ops().is_host(), code::kDevice, "last_position",
                "has a backward on the CPU only, got a graph on ", g.ops().name());
    g.on_backward([&g, x, y, R, T, C] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      float* dx = g.grad(x).f32();
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < C; ++c) dx[(r * T + T - 1) * C + c] += dy.f32()[r * C + c];
    });
  }
  return y;
}

}  // namespace nn
}  // namespace s2s
