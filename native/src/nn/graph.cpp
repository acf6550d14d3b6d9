// Graph: Var allocation in the arena, lazy gradients, views, the reverse run of the tape, and
// checkpointed segments (recomputed in backward).
#include "s2s/nn/graph.h"

#include <cstring>
#include <new>


namespace s2s {

Graph::Graph(size_t arena_block_bytes)
    : arena_(arena_block_bytes),
      segment_arena_(arena_block_bytes),
      backend_(cpu_backend_shared()),
      ops_(backend_.get()) {}

void Graph::reset() {
  release_segment();
  tape_.clear();
  arena_.reset();
  if (!ops_->is_host()) ops_->activation_reset();
  dropout_offset = 0;
  known_dloss.reset();
  loss_only = false;
  seeded_ = nullptr;
  staged_dropout_seed_ = nullptr;
}

DropoutSeed Graph::dropout_key() {
  DropoutSeed key(dropout_seed);
  if (ops_->is_host()) return key;
  if (staged_dropout_seed_ == nullptr || staged_dropout_seed_value_ != dropout_seed) {
    void* dst = ops_->input_allocate(sizeof(uint64_t));
    if (upload_indices) ops_->upload(dst, &dropout_seed, sizeof(uint64_t));
    staged_dropout_seed_ = static_cast<const uint64_t*>(dst);
    staged_dropout_seed_value_ = dropout_seed;
  }
  key.on_device = staged_dropout_seed_;
  return key;
}

Graph::MemoryPeaks Graph::memory_peaks() const {
  return {arena_.peak_bytes_in_use(), segment_arena_.peak_bytes_in_use()};
}

void Graph::reset_peaks() {
  arena_.reset_peak();
  segment_arena_.reset_peak();
  if (backend_ != nullptr) backend_->reset_activation_peak();
}

Graph::ActivationMemory Graph::activation_memory() {
  if (backend_ != nullptr && !backend_->is_host()) {
    const Backend::DeviceMemory d = backend_->device_memory();
    if (d.known) return {d.activation_peak, d.activation_reserved};
  }
  return {arena_.peak_bytes_in_use() + segment_arena_.peak_bytes_in_use(),
          arena_.bytes_reserved() + segment_arena_.bytes_reserved()};
}

void Graph::set_backend(std::shared_ptr<Backend> backend) {
  S2S_REQUIRE(backend != nullptr, code::kArgument, "Graph::set_backend", "expected a backend");
  reset();
  backend_ = std::move(backend);
  ops_ = backend_.get();
}

void* Graph::tensor_memory(size_t bytes) {
  if (ops_->is_host()) return host_arena().allocate(bytes);
  return in_segment_ ? ops_->segment_allocate(bytes) : ops_->activation_allocate(bytes);
}

void* Graph::grad_memory(const Var* owner, size_t bytes) {
  if (owner->in_segment || !in_segment_) return tensor_memory(bytes);
  return ops_->is_host() ? arena_.allocate(bytes) : ops_->activation_allocate(bytes);
}

Tensor Graph::tensor(DType dtype, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return Tensor::contiguous(tensor_memory(dtype_size(dtype) * static_cast<size_t>(n)), dtype,
                            shape);
}

float Graph::read_scalar(const Tensor& t) const {
  float v = 0;
  ops_->download(&v, t.data, sizeof(float));
  return v;
}

float Graph::read_scalar(const Var* v) const {
  return v->host_known ? v->host_value : read_scalar(v->value);
}

void Graph::write_scalar(Var* v, float value) {
  S2S_REQUIRE(v->value.numel() == 1 && v->value.dtype == DType::F32, code::kShape,
              "write_scalar", "expected a one-element float32 Var, got ",
              v->value.shape_string());
  ops_->upload(v->value.data, &value, sizeof(float));
  v->host_known = true;
  v->host_value = value;
}

float Graph::grad_scalar(Var* v) {
  const Var* owner = v->base != nullptr ? v->base : v;
  if (owner == seeded_ && owner->value.numel() == 1) return seed_;
  const Tensor g = grad_if_present(v);
  return g.data != nullptr ? read_scalar(g) : 0.0f;
}

Var* Graph::new_var() {
  void* mem = host_arena().allocate(sizeof(Var));
  Var* v = new (mem) Var();  // Var is trivially destructible: the arena reset releases it
  v->in_segment = in_segment_;
  return v;
}

Var* Graph::constant(const Tensor& t) {
  Var* v = new_var();
  v->value = t;
  return v;
}

Var* Graph::param(Param& p) {
  Var* v = new_var();
  v->value = p.value;
  v->param = &p;
  v->requires_grad = tracks(&p);
  return v;
}

Var* Graph::output(int ndim, const int64_t* shape, bool requires_grad, DType dtype) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  Var* v = new_var();
  v->value = Tensor::contiguous(tensor_memory(dtype_size(dtype) * static_cast<size_t>(n)), dtype,
                                ndim, shape);
  v->requires_grad = requires_grad;
  return v;
}

Var* Graph::output(std::initializer_list<int64_t> shape, bool requires_grad) {
  return output(static_cast<int>(shape.size()), shape.begin(), requires_grad);
}

Var* Graph::view(Var* v, std::initializer_list<int64_t> shape) {
  Var* out = new_var();
  out->value = Tensor::contiguous(v->value.data, v->value.dtype, shape);
  S2S_REQUIRE(out->value.numel() == v->value.numel(), code::kShape, "view", "expected ",
              v->value.numel(), " elements like ", v->value.shape_string(), ", got ",
              out->value.shape_string());
  out->requires_grad = v->requires_grad;
  out->base = v->base ? v->base : v;
  if (v->matmul_copy.data != nullptr) {
    out->matmul_copy = Tensor::contiguous(v->matmul_copy.data, v->matmul_copy.dtype, shape);
  }
  return out;
}

static Tensor reshaped(const Tensor& storage, const Tensor& like) {
  if (storage.data == nullptr) return Tensor{};
  return Tensor::contiguous(storage.data, storage.dtype, like.ndim, like.shape);
}

void Graph::widen_if_bf16(Var* owner) {
  if (owner->grad.data == nullptr || owner->grad.dtype != DType::BF16) return;
  const int64_t n = owner->value.numel();
  const Tensor wide = Tensor::contiguous(grad_memory(owner, sizeof(float) * static_cast<size_t>(n)),
                                         DType::F32, owner->value.ndim, owner->value.shape);
  ops_->cast(wide, owner->grad);  // bf16 -> f32 widening is exact
  owner->grad = wide;
}

Tensor Graph::grad(Var* v) {
  if (!v->requires_grad) return Tensor{};
  if (v->base) return reshaped(grad(v->base), v->value);
  if (v->param) return v->param->grad;
  if (v == seeded_) seeded_ = nullptr;  // a writer may change the seed from here on
  widen_if_bf16(v);
  if (v->grad.data == nullptr) {
    const size_t bytes = sizeof(float) * static_cast<size_t>(v->value.numel());
    void* mem = grad_memory(v, bytes);
    ops_->fill_zero(mem, bytes);
    v->grad = Tensor::contiguous(mem, DType::F32, v->value.ndim, v->value.shape);
  }
  return v->grad;
}

Graph::GradBuffer Graph::grad_for_write(Var* v) {
  if (!v->requires_grad) return {};
  if (v->base) {
    // A view has its base's element count (checked in view()): a full write of one is a full
    // write of the other.
    const GradBuffer b = grad_for_write(v->base);
    return {reshaped(b.grad, v->value), b.fresh};
  }
  if (v->param) return {v->param->grad, false};
  if (v == seeded_) seeded_ = nullptr;  // a writer may change the seed from here on
  widen_if_bf16(v);
  if (v->grad.data != nullptr) return {v->grad, false};
  const size_t bytes = sizeof(float) * static_cast<size_t>(v->value.numel());
  v->grad = Tensor::contiguous(grad_memory(v, bytes), DType::F32, v->value.ndim, v->value.shape);
  return {v->grad, true};
}

bool Graph::grads_for_write(std::initializer_list<Var*> vars, Tensor* grads, bool bf16_ok) {
  if (bf16_ok && bf16_gradients && ops_->supports_bf16_gradients()) {
    // All or none: an op writes its gradients in one dtype. Each one's storage (a view's is its
    // base's) its own, marked grad_bf16_ok, and not written yet.
    auto owner = [](Var* v) { return v->base != nullptr ? v->base : v; };
    bool all = true;
    for (Var* v : vars) {
      if (v == nullptr || !v->requires_grad) continue;
      Var* o = owner(v);
      all = all && o->grad_bf16_ok && o->param == nullptr && o->grad.data == nullptr;
      size_t same = 0;
      for (Var* w : vars) same += w != nullptr && w->requires_grad && owner(w) == o;
      all = all && same == 1;
    }
    if (all) {
      size_t i = 0;
      for (Var* v : vars) {
        grads[i++] = v != nullptr && v->requires_grad
                         ? reshaped(grad_for_write_bf16(owner(v)).grad, v->value)
                         : Tensor{};
      }
      return true;
    }
  }
  bool all_fresh = true;
  bool fresh[8] = {};
  S2S_REQUIRE(vars.size() <= 8, code::kInternal, "grads_for_write", "expected at most 8 Vars");
  size_t i = 0;
  for (Var* v : vars) {
    const GradBuffer b = v != nullptr ? grad_for_write(v) : GradBuffer{};
    grads[i] = b.grad;
    fresh[i] = b.fresh;
    all_fresh = all_fresh && (b.grad.data == nullptr || b.fresh);
    ++i;
  }
  if (!all_fresh) {
    for (size_t j = 0; j < vars.size(); ++j) {
      if (fresh[j]) ops_->fill_zero(grads[j].data, tensor_bytes(grads[j]));
    }
  }
  return all_fresh;
}

Graph::GradBuffer Graph::grad_for_write_bf16(Var* v) {
  if (!bf16_gradients || !ops_->supports_bf16_gradients() || !v->requires_grad ||
      v->base != nullptr || v->param != nullptr || !v->grad_bf16_ok || v->grad.data != nullptr) {
    return grad_for_write(v);
  }
  const size_t bytes = sizeof(uint16_t) * static_cast<size_t>(v->value.numel());
  v->grad = Tensor::contiguous(grad_memory(v, bytes), DType::BF16, v->value.ndim, v->value.shape);
  return {v->grad, true};
}

bool Graph::adopt_grad(Var* v, const Tensor& src) {
  if (!v->requires_grad || v->param != nullptr || src.data == nullptr) return false;
  // The seed's buffer shared: its new owner's writers may change it from here on.
  if (seeded_ != nullptr && src.data == seeded_->grad.data) seeded_ = nullptr;
  Var* owner = v->base ? v->base : v;  // a view's gradient is its base's
  if (owner->param != nullptr || owner->grad.data != nullptr) return false;
  // A segment's input outlives the segment's memory, where src may be.
  if (in_segment_ && !owner->in_segment) return false;
  S2S_REQUIRE(src.numel() == owner->value.numel() && src.dtype == DType::F32, code::kShape,
              "adopt_grad", "expected a float32 gradient of ", owner->value.numel(),
              " elements, got ", src.shape_string());
  owner->grad = Tensor::contiguous(src.data, DType::F32, owner->value.ndim, owner->value.shape);
  return true;
}

Tensor Graph::grad_if_present(Var* v) {
  if (!v->requires_grad) return Tensor{};
  if (v->base) return reshaped(grad_if_present(v->base), v->value);
  if (v->param) return v->param->grad;
  return v->grad;
}

void Graph::on_backward(std::function<void()> fn) {
  (in_segment_ ? segment_tape_ : tape_).push_back(std::move(fn));
}

// ---- checkpointed segments ----------------------------------------------------------------------
// One segment at a time owns the segment region (segment_arena_ for Vars, scratch and host
// tensor memory; the backend's segment memory on a device): run_segment starts it empty and
// runs the segment there, release_segment gives it all back.

void Graph::release_segment() {
  segment_tape_.clear();
  segment_arena_.reset();
  if (!ops_->is_host()) ops_->segment_reset();
  in_segment_ = false;
}

Var* Graph::run_segment(const std::function<Var*(Graph&)>& segment) {
  release_segment();
  in_segment_ = true;
  Var* out = nullptr;
  try {
    out = segment(*this);
  } catch (...) {
    release_segment();
    throw;
  }
  const Var* owner = out != nullptr && out->base != nullptr ? out->base : out;
  if (owner == nullptr || !owner->in_segment || owner->param != nullptr ||
      out->value.dtype != DType::F32) {
    release_segment();
    fail(code::kArgument, "checkpoint",
         "expected the segment to return a float32 activation it computed, got ",
         out == nullptr ? "none" : owner->param != nullptr ? "a parameter" : !owner->in_segment
             ? "a Var made before the segment" : dtype_name(out->value.dtype));
  }
  return out;
}

Var* Graph::transient(const std::function<Var*(Graph&)>& block) {
  if (!no_grad || in_segment_) return block(*this);
  Var* inner = run_segment(block);
  in_segment_ = false;  // the output's copy belongs to the pass
  Var* out = output(inner->value.ndim, inner->value.shape, /*requires_grad=*/false);
  ops_->copy_values(out->value, inner->value);
  release_segment();
  return out;
}

Var* Graph::checkpoint(std::function<Var*(Graph&)> segment) {
  if (in_segment_) return segment(*this);
  if (no_grad) return transient(segment);
  const uint64_t dropout_begin = dropout_offset;
  Var* inner = run_segment(segment);
  const uint64_t dropout_end = dropout_offset;
  in_segment_ = false;  // the output's copy belongs to the pass
  Var* out = output(inner->value.ndim, inner->value.shape, inner->requires_grad);
  // The consumers see the output as they would see the segment's own Var, bf16 gradient
  // storage included (grad_for_write_bf16 never gives a view one).
  out->grad_bf16_ok = inner->grad_bf16_ok && inner->base == nullptr;
  ops_->copy_values(out->value, inner->value);
  release_segment();
  if (out->requires_grad) {
    on_backward([this, segment = std::move(segment), out, dropout_begin, dropout_end] {
      backward_segment(segment, out, dropout_begin, dropout_end);
    });
  }
  return out;
}

void Graph::backward_segment(const std::function<Var*(Graph&)>& segment, Var* out,
                             uint64_t dropout_begin, uint64_t dropout_end) {
  const Tensor dout = grad_if_present(out);
  if (dout.data == nullptr) return;
  const uint64_t dropout_now = dropout_offset;
  dropout_offset = dropout_begin;  // the same masks as the first run
  Var* inner = run_segment(segment);
  if (dropout_offset != dropout_end || inner->value.numel() != out->value.numel() ||
      !inner->requires_grad) {
    release_segment();
    fail(code::kInternal, "checkpoint",
         "the recomputed segment differs from its first run (dropout draws ",
         dropout_offset - dropout_begin, " vs ", dropout_end - dropout_begin, ", output ",
         inner->value.shape_string(), " vs ", out->value.shape_string(),
         "): a segment must be a pure function of what it captures");
  }
  // The rerun's output takes the copy's gradient (final by now: everything that read the copy
  // ran earlier in backward), then the segment's own steps run, in reverse, in its region.
  Var* owner = inner->base != nullptr ? inner->base : inner;
  owner->grad = Tensor::contiguous(dout.data, dout.dtype, owner->value.ndim, owner->value.shape);
  for (auto it = segment_tape_.rbegin(); it != segment_tape_.rend(); ++it) (*it)();
  release_segment();
  dropout_offset = dropout_now;
}

void Graph::backward(Var* loss, float dloss) {
  S2S_REQUIRE(loss->value.numel() == 1, code::kShape, "backward",
              "expected a one-element loss, got ", loss->value.shape_string());
  S2S_REQUIRE(loss->requires_grad, code::kArgument, "backward",
              "expected a loss that depends on a trainable parameter (are all params frozen?)");
  // d(loss) += dloss through the backend's copies; a fresh gradient holds 0, not read back.
  const GradBuffer d = grad_for_write(loss);
  float seed = d.fresh ? 0.0f : read_scalar(d.grad);
  seed += dloss;
  ops_->set_scalar(d.grad.f32(), seed);  // queued with the value: a recorded pass keeps it
  seeded_ = loss->base != nullptr ? loss->base : loss;
  seed_ = seed;
  for (auto it = tape_.rbegin(); it != tape_.rend(); ++it) (*it)();
  seeded_ = nullptr;
}

}  // namespace s2s
