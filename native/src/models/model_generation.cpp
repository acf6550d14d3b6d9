// Model's generation defaults: an architecture that has no forward over a KV cache refuses
// with an error naming it (gpt2, llama/qwen2 and t5 override these).
#include "s2s/error.h"
#include "s2s/models/model.h"

namespace s2s {

KVCacheShape Model::self_cache_shape() const {
  fail(code::kArgument, "generate", "model_type '", config_.model_type,
       "' has no generation forward");
}

Var* Model::forward_cached(Graph&, const int32_t*, const int32_t*, int64_t, int64_t, KVCache&) {
  fail(code::kArgument, "generate", "model_type '", config_.model_type,
       "' has no generation forward");
}

void Model::encode_to_cache(Graph&, const Batch&, KVCache&) {
  fail(code::kArgument, "generate", "model_type '", config_.model_type,
       "' is not an encoder-decoder model (no encoder to run)");
}

}  // namespace s2s
