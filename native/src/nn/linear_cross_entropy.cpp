// nn::linear_cross_entropy: the LM head and its loss with the logits made a chunk of rows at a
// time and never whole. The (N,V) logits are the largest activation of a language model (GPT-2
// at 16 x 1024 tokens: 3.3 GB in fp32, and a gradient as large again; Qwen2's 151,936-token
// vocabulary at 4 x 1024: 2.5 GB each); here they take one chunk's worth, forward and backward.
// A training step knows the backward's seed before the forward (Graph::known_dloss: 1, or fp16's
// scale / tokens): then each chunk's gradients (dx rows, and dW added to the head's gradient)
// are made in the forward from the logits at hand, the head's three GEMMs of the plain path and
// no more. Otherwise the backward makes each chunk's logits again (all but one chunk's, still in
// the buffer), one more head GEMM. Either way every gradient is the one the plain path computes
// from the same logits, for whatever dloss the backward is seeded with (fp16's scale included),
// and the two ways give the same bits. The chunk's logits and their gradient have rows
// Backend::aligned_row_stride(V) apart: padded on a GPU, whose GEMMs want 16-byte aligned rows
// that GPT-2's 50,257 columns do not give (Graph::loss_only runs the whole head as one chunk
// for that alone).
#include <algorithm>
#include <limits>
#include <vector>

#include "nn/host_labels.h"
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

namespace {

constexpr int64_t kChunkBytes = int64_t{64} << 20;  // one chunk's f32 logits

// Rows [row0, row0 + rows) of a contiguous (N, cols) tensor.
Tensor rows_of(const Tensor& t, int64_t row0, int64_t rows, int64_t cols) {
  char* base = static_cast<char*>(t.data);
  const size_t offset = static_cast<size_t>(row0 * cols) * dtype_size(t.dtype);
  return Tensor::contiguous(base + offset, t.dtype, {rows, cols});
}

// The first `rows` rows of a chunk buffer whose rows are ld elements apart (Backend::
// aligned_row_stride: padded where the backend's GEMMs want aligned rows), as a (rows, cols)
// view.
Tensor chunk_rows_of(const Tensor& buffer, int64_t rows, int64_t cols, int64_t ld) {
  Tensor t = Tensor::contiguous(buffer.data, buffer.dtype, {rows, cols});
  t.strides[0] = ld;
  return t;
}

// Elements [begin, begin + n) of a contiguous f32 vector.
Tensor span_of(const Tensor& t, int64_t begin, int64_t n) {
  return Tensor::contiguous(t.f32() + begin, DType::F32, {n});
}

}  // namespace

int64_t loss_chunk_rows(int64_t vocab_size, int64_t min_rows) {
  const int64_t rows =
      std::max(kChunkBytes / (4 * std::max<int64_t>(vocab_size, 1)), min_rows);
  // A multiple of 16 rows where there is room (whole GEMM tiles), at least one row.
  return rows >= 16 ? rows / 16 * 16 : std::max<int64_t>(rows, 1);
}

Var* linear_cross_entropy(Graph& g, Var* x, const LinearWeights& head, const int32_t* labels,
                          int64_t num_labels, const CrossEntropyOptions& options,
                          int64_t* count_out, int64_t chunk_rows) {
  S2S_REQUIRE(head.bias == nullptr && head.lora == nullptr, code::kArgument,
              "nn.linear_cross_entropy", "expected a head without bias or LoRA (use nn.linear "
              "and nn.cross_entropy for those)");
  const Tensor w = head.weight->matmul_value();  // every GEMM's weight, forward and backward
  const WeightLayout layout = head.layout;
  const int64_t V = layout == WeightLayout::OutIn ? w.shape[0] : w.shape[1];
  const int64_t C = layout == WeightLayout::OutIn ? w.shape[1] : w.shape[0];
  const int64_t N = num_labels;
  S2S_REQUIRE(x->value.ndim >= 1 && x->value.shape[x->value.ndim - 1] == C &&
                  x->value.numel() == N * C,
              code::kShape, "nn.linear_cross_entropy", "expected x with ", N, " rows of ", C,
              " features (the labels' count, the head's input size), got ",
              x->value.numel(), " elements");
  if (chunk_rows <= 0) chunk_rows = loss_chunk_rows(V, g.ops().min_loss_chunk_rows());
  // As many chunks as chunk_rows asks for, of even sizes: the last one, which the backward
  // reuses, is then no small remainder.
  const int64_t chunks = std::max<int64_t>((N + chunk_rows - 1) / chunk_rows, 1);
  chunk_rows = std::max<int64_t>((N + chunks - 1) / chunks, 1);

  const int64_t count =
      check_and_count_labels(labels, N, V, options.ignore_index, "nn.linear_cross_entropy");
  if (count_out) *count_out = count;
  const int32_t* device_labels = g.indices(labels, N);
  const bool needs_grad = x->requires_grad || g.tracks(head.weight);
  // The backward's seed known already (Graph::known_dloss): the gradients are made here, from
  // the logits at hand, and the backward has no GEMM to run.
  const bool ahead = needs_grad && count > 0 && g.known_dloss.has_value();
  Var* loss = g.output({1}, needs_grad);
  // Each row's lse (for the backward) and label logit: the loss is summed from them once all
  // chunks are queued, so that a GPU is waited for once, not once per chunk. Side by side in
  // one buffer: one download brings both back.
  const Tensor rows = g.tensor(DType::F32, {2 * N});
  Tensor lse = Tensor::contiguous(rows.f32(), DType::F32, {N});
  Tensor label_logit = Tensor::contiguous(rows.f32() + N, DType::F32, {N});
  // One chunk's logits, reused by every chunk, forward and backward (a bump arena until reset),
  // and its gradient: rows ld apart.
  const int64_t ld = g.ops().aligned_row_stride(V);
  Tensor logits = g.tensor(DType::F32, {chunk_rows * ld});

  CrossEntropyOptions sum = options;
  sum.reduction = LossReduction::Sum;
  auto chunk_rows_loss = [&g, lse, label_logit, device_labels, N, chunk_rows,
                          ignore = options.ignore_index](int64_t row0, const Tensor& lg) {
    const int64_t rows = std::min(chunk_rows, N - row0);
    g.ops().cross_entropy_rows(span_of(lse, row0, rows), span_of(label_logit, row0, rows), lg,
                               device_labels + row0, rows, ignore);
  };
  auto has_labels = [labels, N, chunk_rows, ignore = options.ignore_index](int64_t row0) {
    return counted_labels(labels + row0, std::min(chunk_rows, N - row0), ignore) > 0;
  };
  auto chunk_logits = [&g, x, w, layout, logits, V, C, ld](int64_t row0, int64_t rows) {
    const Tensor out = chunk_rows_of(logits, rows, V, ld);
    g.ops().linear_forward(out, rows_of(x->value, row0, rows, C), w, Tensor{}, layout);
    return out;
  };
  // Where the gradient goes and how it is seeded; chunk_gradient adds one chunk's share.
  struct Targets {
    Tensor dlogits;  // one chunk's, bf16 where the plain path's would be (below)
    Tensor dx;       // (N, C), or empty
    bool dx_fresh = false;  // overwrite dx's rows (and zero-fill those of skipped chunks)
    Tensor dweight;  // the head's gradient (a param's: it accumulates), or empty
    float scale = 0;
  };
  auto targets = [&g, x, head, w, options, count, chunk_rows, ld](float dloss, Tensor dx,
                                                                  bool dx_fresh) {
    Targets t;
    // cross_entropy_backward's scale for Mean (dloss / count, rounded once to f32), passed as a
    // Sum's dloss so every chunk's gradient has the plain path's bits.
    t.scale = options.reduction == LossReduction::Mean
                  ? static_cast<float>(double(dloss) / double(count))
                  : dloss;
    // A bf16 head rounds dlogits to bf16 in both GEMMs: write them so where the backend reads
    // bf16 gradients (what Graph::grad_for_write_bf16 does for the plain path's logits).
    const bool bf16 = w.dtype == DType::BF16 && g.bf16_gradients &&
                      g.ops().supports_bf16_gradients();
    t.dlogits = g.tensor(bf16 ? DType::BF16 : DType::F32, {chunk_rows * ld});
    t.dx = x->requires_grad ? dx : Tensor{};
    t.dx_fresh = dx_fresh;
    t.dweight = g.tracks(head.weight) ? head.weight->grad : Tensor{};
    return t;
  };
  // One chunk's share of the gradient; its dlogits made here, or already (with its rows' loss,
  // Backend::cross_entropy_rows_backward) where dlogits_made.
  auto chunk_gradient = [&g, x, w, layout, lse, device_labels, sum, N, C, V, ld, chunk_rows](
                            const Targets& t, int64_t row0, const Tensor* chunk_logits_or_null,
                            bool dlogits_made) {
    const int64_t rows = std::min(chunk_rows, N - row0);
    const Tensor dx_rows = t.dx.data ? rows_of(t.dx, row0, rows, C) : Tensor{};
    if (chunk_logits_or_null == nullptr) {
      // No gradient from these rows; a fresh buffer must still be written everywhere.
      if (t.dx_fresh && dx_rows.data) g.ops().fill_zero(dx_rows.data, tensor_bytes(dx_rows));
      return;
    }
    const Tensor dl = chunk_rows_of(t.dlogits, rows, V, ld);
    if (!dlogits_made) {
      g.ops().cross_entropy_backward(dl, *chunk_logits_or_null, span_of(lse, row0, rows),
                                     device_labels + row0, rows, t.scale, sum,
                                     /*overwrite=*/true);
    }
    g.ops().linear_backward(dx_rows, t.dweight, Tensor{}, dl, rows_of(x->value, row0, rows, C),
                            w, layout, t.dx_fresh);
  };

  // Each chunk's logits -> its rows' lse and label logits (chunks without a counted row are
  // skipped: padding). The gradient's chunk order is the same either way (last chunk first,
  // so that the backward's first chunk is the one whose logits the buffer still holds): the
  // gradients made ahead have the bits of those made in the backward.
  const int64_t last = (N - 1) / chunk_rows * chunk_rows;
  int64_t kept = -1;  // the first row of the chunk whose logits the buffer holds after the loop
  Tensor dx_ahead;    // ahead: x's gradient, handed to x by the backward
  if (ahead) {
    if (x->requires_grad) dx_ahead = g.tensor(DType::F32, {N, C});
    const Targets t = targets(*g.known_dloss, dx_ahead, /*dx_fresh=*/true);
    for (int64_t row0 = last; row0 >= 0; row0 -= chunk_rows) {
      if (!has_labels(row0)) {
        chunk_gradient(t, row0, nullptr, false);
        continue;
      }
      const int64_t rows = std::min(chunk_rows, N - row0);
      const Tensor lg = chunk_logits(row0, rows);
      // The rows' loss and their dlogits from one read of the logits (where the backend fuses
      // them), the bits of cross_entropy_rows and then cross_entropy_backward.
      g.ops().cross_entropy_rows_backward(span_of(lse, row0, rows),
                                          span_of(label_logit, row0, rows),
                                          chunk_rows_of(t.dlogits, rows, V, ld), lg,
                                          device_labels + row0, rows, options.ignore_index,
                                          t.scale);
      chunk_gradient(t, row0, &lg, /*dlogits_made=*/true);
    }
  } else {
    for (int64_t row0 = 0; row0 < N; row0 += chunk_rows) {
      if (!has_labels(row0)) continue;
      const int64_t rows = std::min(chunk_rows, N - row0);
      kept = row0;
      chunk_rows_loss(row0, chunk_logits(row0, rows));
    }
  }
  // The plain path's value (the rows' losses summed in row order, as cross_entropy_forward
  // does): the sum, or the mean over counted rows (NaN when none, as torch).
  if (g.loss_on_device) {
    // Summed where the rows lie, in the same order: nothing waits (Graph::loss_on_device).
    g.ops().cross_entropy_loss(loss->value, lse, label_logit, device_labels, N, options);
  } else {
    double total = 0;
    if (count > 0) {
      std::vector<float> host(static_cast<size_t>(2 * N));  // lse, then the label logits
      g.ops().download(host.data(), rows.data, sizeof(float) * host.size());
      g.ops().synchronize();  // idle by now: raises what any kernel of the pass reported
      total = cross_entropy_row_sum(host.data(), host.data() + N, labels, N,
                                    options.ignore_index);
    }
    const double value = options.reduction == LossReduction::Sum ? total
                         : count == 0 ? std::numeric_limits<double>::quiet_NaN()
                                      : total / static_cast<double>(count);
    g.write_scalar(loss, static_cast<float>(value));
  }
  if (!needs_grad || count == 0) return loss;

  if (ahead) {
    g.on_backward([&g, x, loss, dx_ahead, planned = *g.known_dloss] {
      // The head's gradient is in already: a backward seeded otherwise, or not through this
      // loss, would leave it wrong.
      const bool seeded = g.grad_if_present(loss).data != nullptr;
      const float d = g.grad_scalar(loss);
      S2S_REQUIRE(seeded && d == planned, code::kInternal,
                  "nn.linear_cross_entropy", "the backward's seed ", d, " is not the ",
                  planned, " Graph::known_dloss promised the forward");
      if (dx_ahead.data && !g.adopt_grad(x, dx_ahead)) g.ops().axpy(g.grad(x), 1.0f, dx_ahead);
    });
    return loss;
  }
  g.on_backward([&g, x, loss, targets, chunk_gradient, chunk_logits, has_labels, logits, kept,
                 last, N, V, ld, chunk_rows] {
    const Tensor dloss = g.grad_if_present(loss);
    if (dloss.data == nullptr) return;
    const Graph::GradBuffer dx = x->requires_grad ? g.grad_for_write(x) : Graph::GradBuffer{};
    const Targets t = targets(g.grad_scalar(loss), dx.grad, dx.fresh);
    for (int64_t row0 = last; row0 >= 0; row0 -= chunk_rows) {
      if (!has_labels(row0)) {
        chunk_gradient(t, row0, nullptr, false);
        continue;
      }
      const int64_t rows = std::min(chunk_rows, N - row0);
      const Tensor lg =
          row0 == kept ? chunk_rows_of(logits, rows, V, ld) : chunk_logits(row0, rows);
      chunk_gradient(t, row0, &lg, false);
    }
  });
  return loss;
}

}  // namespace nn
}  // namespace s2s
