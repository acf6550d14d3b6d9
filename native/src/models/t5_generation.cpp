// T5ForConditionalGeneration's generation forward: the encoder runs once and leaves each decoder
// layer's cross-attention keys/values in the KV cache; each decoding step then runs the decoder
// over the new tokens only, with self-attention through the cache. Same composition as
// T5Model::decode (t5.cpp), of nn/ layers only.
// Legend: R rows (batch x beams), T new tokens, C d_model, H heads, D d_kv, Te encoder length.
#include <cmath>

#include "s2s/error.h"
#include "s2s/generate/kv_cache.h"
#include "s2s/models/t5.h"
#include "s2s/nn/functional.h"

namespace s2s {

KVCacheShape T5Model::self_cache_shape() const {
  return {config_.num_decoder_layers, config_.num_heads, config_.head_dim};
}

KVCacheShape T5Model::cross_cache_shape() const { return self_cache_shape(); }

void T5Model::encode_to_cache(Graph& g, const Batch& batch, KVCache& cache) {
  S2S_REQUIRE(cache.on_host() == g.ops().is_host(), code::kArgument, "encode_to_cache",
              "expected the KV cache on the graph's backend (", g.ops().name(), ")");
  const int64_t B = batch.B, Te = batch.T;
  const int64_t HD = config_.num_heads * config_.head_dim;
  Var* enc = encode(g, batch);  // (B,Te,C)
  for (size_t l = 0; l < decoder_.size(); ++l) {
    const Attention& a = decoder_[l].cross_attn;
    const Tensor k = nn::linear(g, enc, a.k)->value;  // (B,Te,H*D)
    const Tensor v = nn::linear(g, enc, a.v)->value;
    Tensor ck = cache.cross_keys(int64_t(l)), cv = cache.cross_values(int64_t(l));
    S2S_REQUIRE(ck.numel() == B * Te * HD, code::kShape, "t5", "expected a cross cache of ", B,
                " items x ", Te, " positions, got ", ck.shape_string());
    // Into the cache's dtype: a copy, or rounded to a 16-bit cache (KVCache::set_dtype).
    g.ops().cast(ck, Tensor::contiguous(k.data, DType::F32, ck.ndim, ck.shape));
    g.ops().cast(cv, Tensor::contiguous(v.data, DType::F32, cv.ndim, cv.shape));
  }
  for (int64_t b = 0; b < B; ++b) {
    int32_t len = int32_t(Te);
    if (batch.attention_mask != nullptr) {
      const int32_t* m = batch.attention_mask + b * Te;
      len = 0;
      while (len < Te && m[len] != 0) ++len;
      for (int64_t t = len; t < Te; ++t) {
        S2S_REQUIRE(m[t] == 0, code::kArgument, "t5",
                    "generation expects right-padded encoder inputs (attention_mask ones then "
                    "zeros), row ", b, " has a 1 at ", t, " after a 0");
      }
    }
    cache.set_cross_length(b, len);
  }
}

Var* T5Model::forward_cached(Graph& g, const int32_t* tokens, const int32_t*, int64_t R, int64_t T,
                             KVCache& cache) {
  expect_graph_backend(g, "forward_cached");
  nn::expect_cache_on_graph_backend(g, cache, "forward_cached");
  const ModelConfig& c = config_;
  const int64_t H = c.num_heads, D = c.head_dim, C = c.hidden_size, len = cache.length();
  const float eps = c.norm_eps;
  Var* h = nn::embedding(g, tokens, R, T, shared_, nullptr, nullptr);  // (R,T,C)
  // The new queries sit at positions len..len+T-1 of the decoder sequence. One new position
  // (every decoding step): (H,1,capacity), the length read on the device, so a recorded step
  // replays; several (a test's chunk): (H,T,len+T) for the whole-sequence attention.
  Var* bias = T == 1 ? nn::t5_decoding_position_bias(g, dec_rel_bias_, T, cache,
                                                      c.relative_attention_max_distance)
                     : nn::t5_position_bias(g, dec_rel_bias_, T, len + T, /*bidirectional=*/false,
                                            c.relative_attention_max_distance, len);
  AttentionOptions self_opts, cross_opts;
  self_opts.causal = true;
  self_opts.scale = 1.0f;  // T5's unscaled scores
  cross_opts.scale = 1.0f;
  for (size_t l = 0; l < decoder_.size(); ++l) {
    const Block& b = decoder_[l];
    const Attention& sa = b.self_attn;
    h = run_cached_block(g, T, [&](Graph& g) {
      Var* n = nn::rmsnorm(g, h, b.self_norm, eps, self_attention_input(g, sa));
      share_attention_input(g, n, sa);
      Var* q = g.view(nn::linear(g, n, sa.q), {R, T, H, D});
      Var* k = g.view(nn::linear(g, n, sa.k), {R, T, H, D});
      Var* v = g.view(nn::linear(g, n, sa.v), {R, T, H, D});
      Var* a = nn::cached_attention(g, q, k, v, cache, int64_t(l), bias, self_opts);
      Var* y = nn::add(g, h, nn::linear(g, g.view(a, {R, T, H * D}), sa.o));
      n = nn::rmsnorm(g, y, b.cross_norm, eps, nn::matmul_input_dtype(g, {&b.cross_attn.q}));
      q = g.view(nn::linear(g, n, b.cross_attn.q), {R, T, H, D});
      a = nn::cross_attention(g, q, cache, int64_t(l), cross_opts);
      y = nn::add(g, y, nn::linear(g, g.view(a, {R, T, H * D}), b.cross_attn.o));
      n = nn::rmsnorm(g, y, b.ff_norm, eps, feed_forward_input(g, b.ff));
      share_feed_forward_input(g, n, b.ff);
      return nn::add(g, y, feed_forward(g, b.ff, n));
    });
  }
  const DType head_in =
      c.tie_word_embeddings ? DType::F32 : nn::matmul_input_dtype(g, {&lm_head_});
  Var* s = nn::rmsnorm(g, nn::last_position(g, h), dec_final_norm_, eps, head_in);  // (R,C)
  if (c.tie_word_embeddings) {
    s = nn::scale(g, s, static_cast<float>(std::pow(static_cast<double>(C), -0.5)));
  }
  return nn::linear(g, s, lm_head_);  // (R,V)
}

}  // namespace s2s
