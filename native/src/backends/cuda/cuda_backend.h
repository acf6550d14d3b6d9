// The CUDA backend of the model path (s2s/nn/backend.h): a model's params, activations and index
// arrays in device memory, every op queued on the model's own cuda::Context (cuda_ops.h).
// Persistent tensors come from cudaMalloc, activations from the context's device arena (rewound
// by Graph::reset). Plain C++ (no nvcc), compiled only where the CUDA backend is built
// (S2S_HAVE_CUDA); cuda_backend.cpp is also in the compile-only target s2s_cuda_kernels.
// Decoding steps can be recorded once as a CUDA graph and replayed (Backend::record,
// captured_graph.h).
#pragma once
#include <memory>

#include "backends/cuda/context.h"
#include "s2s/nn/backend.h"

namespace s2s {
namespace cuda {

// Backend whose context() tests and benches reach (TF32, the arena) through
// cuda_context(); throws S2S_DEVICE (prefixed with `what`) when no device is usable.
std::shared_ptr<Backend> make_cuda_backend(const ContextOptions& options, const char* what);

// The context of a backend made by make_cuda_backend (S2S_ARGUMENT for any other backend).
Context& cuda_context(Backend& backend);

}  // namespace cuda
}  // namespace s2s
