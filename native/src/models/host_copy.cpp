// host_copy (s2s/models/host_copy.h): rebuild the model on the CPU, attach the same adapters,
// then download every param by name.
#include "s2s/models/host_copy.h"

#include "s2s/error.h"

namespace s2s {

HostCopy host_copy(Model& model, const LoraAdapter* adapter) {
  HostCopy out;
  out.model = create_model(model.config());
  out.model->set_compute_dtype(model.compute_dtype());  // the store makes the copies as it loads
  if (adapter != nullptr && !adapter->merged) {
    // Seed 0: A and B are overwritten below; the structure (targets, r, scaling) is what counts.
    out.adapter = std::make_unique<LoraAdapter>(apply_lora(*out.model, adapter->config, 0));
  }
  Backend& from = model.backend();
  ParamStore& to = out.model->params();
  for (Param* p : model.params().all()) {
    Param* q = to.find(p->name);
    S2S_REQUIRE(q != nullptr, code::kInternal, "host_copy", "the copy has no param '", p->name,
                "'");
    std::vector<uint8_t> bytes(tensor_bytes(p->value));
    from.download(bytes.data(), p->value.data, bytes.size());
    Tensor host = p->value;  // dtype and shape; the data pointer is set below
    if (p->value.dtype == DType::F32) {
      host.data = bytes.data();
      to.load(*q, host);  // into the copy's own fp32 storage
    } else {
      out.storage.push_back(std::move(bytes));
      host.data = out.storage.back().data();
      to.bind(*q, host);  // a frozen bf16/f16 weight stays in its dtype
    }
  }
  return out;
}

}  // namespace s2s
