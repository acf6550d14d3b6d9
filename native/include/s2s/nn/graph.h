// Graph: the tape of one forward pass, so models never write backward code. Each layer in
// nn/functional.h computes its output Var and records a closure that, run in reverse order by
// backward(), calls the ops' backward functions. Activations and their gradients live in the
// graph's arena and are released by reset() at the start of the next step: memory does not grow
// from step to step. Param gradients are the params' own buffers and ACCUMULATE across passes
// (gradient accumulation), until the optimizer zeroes them.
// The graph runs on a Backend (s2s/nn/backend.h; the CPU unless set_backend says otherwise, and
// it must be the backend of the params it is given): activations and gradients are the
// backend's tensor memory (on the CPU, the graph's own host arena; on a GPU, the device arena),
// while Vars, the tape and host scratch (scratch()) stay in host memory. Layers reach the ops
// through ops().
// Gradient checkpointing (checkpoint()): a segment of the pass (a transformer block) keeps only
// its output; its intermediates live in a second memory region that is released as soon as the
// segment has run, and backward() runs the segment again to get them back (see checkpoint()).
// Passes without gradients release each block's intermediates the same way (transient()).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <vector>

#include "s2s/arena.h"
#include "s2s/nn/backend.h"
#include "s2s/nn/param.h"
#include "s2s/ops/dropout.h"
#include "s2s/tensor.h"

namespace s2s {

struct Var {
  Tensor value;                // contiguous; f32, or bf16/f16 where only 16-bit linears read it
  bool requires_grad = false;  // some trainable param upstream
  Var* base = nullptr;         // a view shares its base's value and gradient storage
  Param* param = nullptr;      // set when this Var is a param: gradient = param->grad
  Tensor grad;                 // allocated on first use (see Graph::grad); f32, or bf16 (below)
  // Set by the producer when its backward only ever rounds this gradient to bf16 (nn::linear
  // with a bf16 compute weight, no bias, no LoRA): a first writer may then store the gradient as
  // bf16 (Graph::grad_for_write_bf16). Half the bytes, the same products downstream.
  bool grad_bf16_ok = false;
  // value rounded to the 16-bit matmul dtype of the several linears that read this f32 Var
  // (nn::share_matmul_input), made once for all their GEMMs; empty otherwise.
  Tensor matmul_copy;
  // Made while a checkpointed segment ran (Graph::checkpoint): the Var, its value and its
  // gradient live in the segment's memory, released when the segment is done.
  bool in_segment = false;
  // A one-element value the host wrote (Graph::write_scalar), so reading it needs no wait for
  // the device.
  bool host_known = false;
  float host_value = 0;
};

class Graph {
 public:
  explicit Graph(size_t arena_block_bytes = size_t(64) << 20);

  // Starts a new pass: forgets the tape and every Var, rewinds the arena.
  void reset();

  // The backend the layers run on (resets the graph). Default: the CPU.
  void set_backend(std::shared_ptr<Backend> backend);
  Backend& ops() const { return *ops_; }
  const std::shared_ptr<Backend>& backend() const { return backend_; }
  // Routes the layers' calls (ops()) through `ops`, a wrapper over backend() (PassReplay's
  // TracedBackend), until called with nullptr. backend() itself does not change.
  void route_through(Backend* ops) { ops_ = ops != nullptr ? ops : backend_.get(); }

  // Tensor memory for this pass (activations, saved statistics), uninitialised.
  void* tensor_memory(size_t bytes);
  Tensor tensor(DType dtype, std::initializer_list<int64_t> shape);
  // A host index array (ids, positions, labels, a key mask) as tensor memory for the ops, valid
  // until reset: the same pointer on a host backend, else a copy (once per call) in the
  // backend's input memory (Backend::input_allocate, which nothing else of the pass reuses: the
  // copy may be made before the pass's earlier work runs). Null stays null.
  template <typename T>
  const T* indices(const T* host, int64_t count) {
    if (host == nullptr || ops_->is_host()) return host;
    void* dst = ops_->input_allocate(sizeof(T) * static_cast<size_t>(count));
    if (upload_indices) ops_->upload(dst, host, sizeof(T) * static_cast<size_t>(count));
    return static_cast<const T*>(dst);
  }
  // The value of a one-element f32 tensor (waits for the backend).
  float read_scalar(const Tensor& t) const;
  // A one-element Var's value: what write_scalar wrote, without a wait, else read_scalar.
  float read_scalar(const Var* v) const;
  // Writes a one-element Var's value from the host (a loss summed there) and remembers it. For a
  // value nothing writes after its producer, as every Var's but in-place accumulations.
  void write_scalar(Var* v, float value);
  // v's gradient as one float: during backward(), the seed when v is the backward's root and
  // nothing has asked for its gradient buffer since seeding, nor adopted it (then nothing can
  // have changed it: every writer gets a buffer from grad / grad_for_write / adopt_grad),
  // without a wait; else read back. 0 when v has no gradient.
  float grad_scalar(Var* v);

  // Leaves of the graph.
  Var* constant(const Tensor& t);  // outside memory (the backend's), no gradient
  Var* param(Param& p);            // requires_grad = p.trainable; gradient = p.grad

  // A fresh activation (uninitialised) of this shape: f32, or bf16 / f16 for one that only 16-bit
  // linears read (nn::matmul_input_dtype). Its gradient is f32 whatever its dtype.
  Var* output(std::initializer_list<int64_t> shape, bool requires_grad);
  Var* output(int ndim, const int64_t* shape, bool requires_grad, DType dtype = DType::F32);
  // The same storage with another shape (same element count); gradients flow to v.
  Var* view(Var* v, std::initializer_list<int64_t> shape);

  // The gradient buffer of v, zero-filled on first use; an empty Tensor when v needs none.
  Tensor grad(Var* v);
  // For a backward op that can either overwrite (=) or accumulate (+=) v's whole gradient:
  // when nothing has written v's gradient yet (v, or its view base, has no buffer; never for a
  // param, whose gradient accumulates across passes) the buffer is allocated UNINITIALISED and
  // fresh == true, and the caller MUST then write every element of it (no zero-fill needed).
  // Otherwise it is grad(v) with fresh == false and the caller accumulates as usual.
  struct GradBuffer {
    Tensor grad;
    bool fresh = false;
  };
  GradBuffer grad_for_write(Var* v);
  // grad_for_write for the gradients that one backward call writes together, either all
  // overwritten or all accumulated: returns true (overwrite) when every needed one is fresh;
  // otherwise zero-fills the fresh ones and returns false. grads[i] is vars[i]'s gradient (an
  // empty Tensor where none is needed). bf16_ok: an op that can write bf16 gradients (swiglu,
  // geglu, relu, rope); where every needed one would be a fresh grad_for_write_bf16 gradient, they
  // all are (bf16 on backends that take them), and the result is true.
  bool grads_for_write(std::initializer_list<Var*> vars, Tensor* grads, bool bf16_ok = false);
  // grad_for_write, except that a fresh gradient of a Var marked grad_bf16_ok (no view) is
  // allocated as bf16 on backends that take bf16 gradients (the CPU), and stays so for its
  // producer's backward to read through grad_if_present. Should a later writer accumulate into
  // it after all, grad() / grad_for_write() first widen it to a new f32 buffer (that sum is then
  // the bf16 value plus the fp32 rest, one extra rounding of the first term).
  GradBuffer grad_for_write_bf16(Var* v);
  // Hands `src`'s storage to v as its gradient when nothing has written v's gradient yet (v, or
  // its view base, has no buffer; never a param), so a backward step that would copy a gradient
  // it is done with into a fresh buffer can pass the buffer on instead. Returns false (and does
  // nothing) otherwise. The caller promises src is dead: nothing reads or writes it afterwards
  // except through v (nn::add passes its output's gradient to an input this way, so after
  // backward() the two share storage and the output's gradient reads as the input's).
  bool adopt_grad(Var* v, const Tensor& src);
  // The gradient of v if anything was accumulated into it, else an empty Tensor (then v did not
  // contribute to the loss and its backward has nothing to do).
  Tensor grad_if_present(Var* v);

  // Records a backward step; run in reverse order of recording.
  void on_backward(std::function<void()> fn);
  // Seeds d(loss) = dloss (loss is a one-element Var) and runs the tape backwards.
  void backward(Var* loss, float dloss = 1.0f);

  // Gradient checkpointing (transformers' gradient_checkpointing, torch.utils.checkpoint):
  // runs segment(*this) and returns a copy of its output Var (an f32 activation the segment
  // made), releasing everything else the segment allocated (activations, saved statistics,
  // Vars, its tape) at once. backward() then runs the segment a second time, from the same
  // inputs and with the same dropout counters, so it computes the same bits (the ops are
  // deterministic), back-propagates through that rerun and releases it again. The gradients
  // are bit-identical to a plain run's; the price is one more forward of each segment.
  // The segment is stored and called twice, so it must be a pure function of what it captures:
  // Vars made before it (its inputs: their gradients reach them as usual), params, and host
  // data valid until backward (capture by value, not references to loop variables). Segments do
  // not nest (an inner one runs as part of the outer); under no_grad it runs as transient().
  Var* checkpoint(std::function<Var*(Graph&)> segment);

  // Inference's form of the same memory: under no_grad, runs block(*this) with everything it
  // allocates (activations, scratch, Vars) in the segment memory and returns a copy of its
  // output (an f32 activation it computed) in the pass's, releasing the rest at once. A no-grad
  // pass through many blocks (a prompt's prefill, an evaluation batch) then holds one block's
  // activations at a time, and each block's output, instead of every block's. With gradients
  // (no_grad off) the activations are backward's, so block just runs; so it does inside a
  // running segment. Unlike checkpoint's, block runs once and may capture by reference.
  Var* transient(const std::function<Var*(Graph&)>& block);

  // Whether layers track p's gradient in this pass: p is trainable and no_grad is off.
  bool tracks(const Param* p) const { return !no_grad && p != nullptr && p->trainable; }

  // Host memory for this pass: Vars, and host-side scratch (masks and labels built on the host
  // before indices() hands them to the ops). On the CPU, tensor memory too.
  Arena& arena() { return arena_; }
  template <typename T>
  T* scratch(size_t count) { return host_arena().allocate_array<T>(count); }

  // Memory high-water marks since the last reset_peaks(): the host arena (Vars, scratch and, on
  // a host backend, every activation and activation gradient outside segments) and the
  // checkpointed segments' host arena. Host backends only (a device's arenas are its own).
  struct MemoryPeaks {
    size_t main_bytes = 0, segment_bytes = 0;
  };
  MemoryPeaks memory_peaks() const;
  // And the backend's activation peak (Backend::reset_activation_peak) where it has its own.
  void reset_peaks();
  // The activations' memory wherever they live: on a host backend the graph's arenas (peak in
  // use since reset_peaks, and reserved), on a device the backend's (Backend::device_memory).
  struct ActivationMemory {
    size_t peak = 0, reserved = 0;
  };
  ActivationMemory activation_memory();

  // Pass settings, read by the layers.
  bool training = false;          // dropout active
  // Inference (generation): no layer records a backward step or marks a Var as needing a
  // gradient, trainable params included, so a pass allocates no gradient memory.
  bool no_grad = false;
  bool bf16_gradients = true;     // grad_for_write_bf16 may store bf16 (tests switch it off)
  // nn::matmul_input_dtype may store activations in bf16/f16 on backends that take them
  // (Backend::takes_half_activations; tests switch it off to compare).
  bool half_activations = true;
  // nn::share_matmul_input may round an f32 input of several 16-bit linears once for all of
  // them (under half_activations; tests switch it off to compare).
  bool share_matmul_inputs = true;
  // nn::linear_gelu may run its backward as one fused op on backends that have it
  // (Backend::fuses_linear_gelu_backward; tests switch it off to compare).
  bool fuse_linear_gelu = true;
  // nn::linear_split likewise (Backend::fuses_linear_split_backward).
  bool fuse_linear_split = true;
  // nn::residual_add may hand the residual and the branch one gradient buffer (no copy of a
  // residual-sized gradient per block add; tests switch it off to compare).
  bool share_residual_gradient = true;
  // nn::linear_residual may run a residual branch's last linear and the add as one op on
  // backends that fuse them (Backend::fuses_linear_residual; tests switch it off to compare).
  bool fuse_linear_residual = true;
  // nn::dropout_residual_add likewise (Backend::fuses_dropout_add).
  bool fuse_dropout_add = true;
  // nn::attention_output_dtype may have attention write a 16-bit output for the 16-bit linear
  // that alone reads it (under half_activations): the same forward, gradients within the
  // rounding of the saved output (tests switch it off to compare).
  bool half_attention_output = true;
  // generate may record a decoding step and replay it for the steps after, on backends that
  // record (Backend::record; tests switch it off to compare).
  bool replay_decoding_steps = true;
  uint64_t dropout_seed = 0;
  uint64_t dropout_offset = 0;    // advanced by each dropout call (Philox counter)
  // The seed as the layers hand it to the ops: dropout_seed, and on a device a copy of it in the
  // pass's input memory (DropoutSeed::on_device, made by the first call after reset or a change
  // of dropout_seed; uploaded as indices() uploads, so not while upload_indices is off), which
  // the kernels read. A pass then queues the same calls whatever its seed, and PassReplay replays
  // its recording with the next micro-step's.
  DropoutSeed dropout_key();
  // The dloss this pass's backward() will be seeded with, when the caller knows it before the
  // forward (a training step: 1, or fp16's scale / tokens). nn::linear_cross_entropy then makes
  // the head's gradients in its forward, from the logits at hand, instead of making the logits
  // a second time in the backward; nn::cross_entropy writes the logits' gradient with the loss,
  // from the same read of the logits. A promise: gradients are written during the forward, so
  // the pass must go on to backward(loss, *known_dloss) (the backward checks the seed). Cleared
  // by reset(): set it after.
  std::optional<float> known_dloss;
  // The caller reads only the loss of a forward with labels, not ForwardResult::logits (a
  // training micro-step, an evaluation batch). Where the backend's GEMMs want the logits' rows
  // padded (Backend::aligned_row_stride: a GPU, at GPT-2's 50,257 columns), the head and the
  // loss then run as nn::linear_cross_entropy in a single chunk, whose logits and gradient have
  // such rows (a Var is contiguous), and ForwardResult::logits is null: the same loss and
  // gradients, to the bit. Cleared by reset(): set it after.
  bool loss_only = false;
  // The loss stays in tensor memory: nn::cross_entropy (given host labels) and
  // nn::linear_cross_entropy write it there (Backend::cross_entropy_loss, the same bits) instead
  // of bringing the rows back to sum them, so the pass queues without waiting for a device and
  // read_scalar(loss) waits later; bad labels are raised on the host as before, a kernel's
  // report at the next synchronize. For a caller that reads the loss after the backward (a
  // training micro-step). Not cleared by reset().
  bool loss_on_device = false;
  // indices() copies the host arrays in. Off: it only allocates, the caller having put this
  // pass's arrays at those addresses already (a pass being recorded, whose dry run staged them:
  // PassReplay).
  bool upload_indices = true;

 private:
  Var* new_var();
  Arena& host_arena() { return in_segment_ ? segment_arena_ : arena_; }
  // Tensor memory where `owner`'s gradient lives: the segment's for a Var made in the running
  // segment, else the pass's (a segment's inputs keep their gradients after it is released).
  void* grad_memory(const Var* owner, size_t bytes);
  void widen_if_bf16(Var* owner);
  Var* run_segment(const std::function<Var*(Graph&)>& segment);
  void release_segment();
  void backward_segment(const std::function<Var*(Graph&)>& segment, Var* out,
                        uint64_t dropout_begin, uint64_t dropout_end);
  Arena arena_;
  Arena segment_arena_;
  bool in_segment_ = false;
  std::vector<std::function<void()>> segment_tape_;
  std::shared_ptr<Backend> backend_;
  Backend* ops_;
  std::vector<std::function<void()>> tape_;
  // The running backward's root while its gradient is still exactly the seed (grad_scalar).
  Var* seeded_ = nullptr;
  float seed_ = 0;
  // dropout_key's copy of dropout_seed in this pass's device memory, and the value copied.
  const uint64_t* staged_dropout_seed_ = nullptr;
  uint64_t staged_dropout_seed_value_ = 0;
};

}  // namespace s2s
