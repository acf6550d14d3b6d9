// Model::to_backend and the graph/backend check every forward() starts with.
#include "s2s/error.h"
#include "s2s/models/model.h"

namespace s2s {

void Model::to_backend(std::shared_ptr<Backend> backend) { params_.move_to(std::move(backend)); }

void Model::expect_graph_backend(const Graph& g, const char* model) const {
  S2S_REQUIRE(g.backend().get() == &params_.backend(), code::kArgument, model,
              "expected a graph on the model's backend (", params_.backend().name(),
              "), got one on ", g.ops().name(),
              " (Graph::set_backend(model.params().backend_shared()))");
}

void expect_host_model(const Model& model, const char* what) {
  if (model.backend().is_host()) return;
  fail(code::kDevice, what, "generation runs on the CPU only for now, and this model is on ",
       model.backend().name(), " (load it with device 'cpu' to generate; training, evaluation "
       "and saving work on the GPU)");
}

}  // namespace s2s
