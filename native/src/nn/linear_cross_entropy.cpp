// nn::linear_cross_entropy: the LM head and its loss with the logits made a chunk of rows at a
// time and never whole. The (N,V) logits are the largest activation of a language model (GPT-2
// at 16 x 1024 tokens: 3.3 GB in fp32, and a gradient as large again; Qwen2's 151,936-token
// vocabulary at 4 x 1024: 2.5 GB each); here they take one chunk's worth, forward and backward.
// The price is the head's forward GEMM a second time: the backward recomputes each chunk's logits
// (all but the last one's, still in the buffer) rather than keeping them, so every gradient is
// the one the plain path computes from the same logits, for whatever dloss the backward is
// seeded with (fp16's loss scale included).
#include <algorithm>
#include <limits>

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

// Elements [begin, begin + n) of a contiguous f32 vector.
Tensor span_of(const Tensor& t, int64_t begin, int64_t n) {
  return Tensor::contiguous(t.f32() + begin, DType::F32, {n});
}

int64_t counted(const int32_t* labels, int64_t n, int32_t ignore_index) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += labels[i] != ignore_index;
  return c;
}

}  // namespace

int64_t loss_chunk_rows(int64_t vocab_size) {
  const int64_t rows = kChunkBytes / (4 * std::max<int64_t>(vocab_size, 1));
  // A multiple of 16 rows where there is room (whole GEMM tiles), at least one row.
  return rows >= 16 ? rows / 16 * 16 : std::max<int64_t>(rows, 1);
}

Var* linear_cross_entropy(Graph& g, Var* x, const LinearWeights& head, const int32_t* labels,
                          int64_t num_labels, const CrossEntropyOptions& options,
                          int64_t* count_out, int64_t chunk_rows) {
  S2S_REQUIRE(head.bias == nullptr && head.lora == nullptr, code::kArgument,
              "nn.linear_cross_entropy", "expected a head without bias or LoRA (use nn.linear "
              "and nn.cross_entropy for those)");
  const Tensor w = head.weight->matmul_value();  // the forward's and the backward's GEMMs
  const WeightLayout layout = head.layout;
  const int64_t V = layout == WeightLayout::OutIn ? w.shape[0] : w.shape[1];
  const int64_t C = layout == WeightLayout::OutIn ? w.shape[1] : w.shape[0];
  const int64_t N = num_labels;
  S2S_REQUIRE(x->value.ndim >= 1 && x->value.shape[x->value.ndim - 1] == C &&
                  x->value.numel() == N * C,
              code::kShape, "nn.linear_cross_entropy", "expected x with ", N, " rows of ", C,
              " features (the labels' count, the head's input size), got ",
              x->value.numel(), " elements");
  if (chunk_rows <= 0) chunk_rows = loss_chunk_rows(V);
  // As many chunks as chunk_rows asks for, of even sizes: the last one, which the backward
  // reuses, is then no small remainder.
  const int64_t chunks = std::max<int64_t>((N + chunk_rows - 1) / chunk_rows, 1);
  chunk_rows = std::max<int64_t>((N + chunks - 1) / chunks, 1);

  const int64_t count = counted(labels, N, options.ignore_index);
  if (count_out) *count_out = count;
  const int32_t* device_labels = g.indices(labels, N);
  const bool needs_grad = x->requires_grad || g.tracks(head.weight);
  Var* loss = g.output({1}, needs_grad);
  Tensor lse = g.tensor(DType::F32, {N});
  // One chunk's logits, reused by every chunk, forward and backward (a bump arena until reset).
  Tensor logits = g.tensor(DType::F32, {chunk_rows, V});

  // Each chunk's logits -> its rows' lse and summed loss; chunks without a counted row are
  // skipped (padding), in the backward too.
  CrossEntropyOptions sum = options;
  sum.reduction = LossReduction::Sum;
  auto chunk_logits = [&g, x, w, layout, logits, V, C](int64_t row0, int64_t rows) {
    const Tensor out = rows_of(logits, 0, rows, V);
    g.ops().linear_forward(out, rows_of(x->value, row0, rows, C), w, Tensor{}, layout);
    return out;
  };
  double total = 0;
  int64_t kept = -1;  // the first row of the chunk whose logits the buffer holds after the loop
  for (int64_t row0 = 0; row0 < N; row0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, N - row0);
    if (counted(labels + row0, rows, options.ignore_index) == 0) continue;
    kept = row0;
    total += g.ops()
                 .cross_entropy_forward(span_of(lse, row0, rows), chunk_logits(row0, rows),
                                        device_labels + row0, rows, sum)
                 .loss;
  }
  // The plain path's value: the sum, or the mean over counted rows (NaN when none, as torch).
  const double value = options.reduction == LossReduction::Sum ? total
                       : count == 0 ? std::numeric_limits<double>::quiet_NaN()
                                    : total / static_cast<double>(count);
  const float loss_value = static_cast<float>(value);
  g.ops().upload(loss->value.data, &loss_value, sizeof(float));
  if (!needs_grad || count == 0) return loss;

  g.on_backward([&g, x, head, w, labels, device_labels, N, C, V, options, sum, count, chunk_rows,
                 lse, logits, loss, chunk_logits, kept] {
    const Tensor dloss = g.grad_if_present(loss);
    if (dloss.data == nullptr) return;
    // cross_entropy_backward's scale for Mean (dloss / count, rounded once to f32), passed as a
    // Sum's dloss so every chunk's gradient has the plain path's bits.
    const float d = g.read_scalar(dloss);
    const float scale = options.reduction == LossReduction::Mean
                            ? static_cast<float>(double(d) / double(count))
                            : d;
    // A bf16 head rounds dlogits to bf16 in both GEMMs: write them so where the backend reads
    // bf16 gradients (what Graph::grad_for_write_bf16 does for the plain path's logits).
    const bool bf16 = w.dtype == DType::BF16 && g.bf16_gradients &&
                      g.ops().supports_bf16_gradients();
    const Tensor dlogits = g.tensor(bf16 ? DType::BF16 : DType::F32, {chunk_rows, V});
    const Graph::GradBuffer dx = x->requires_grad ? g.grad_for_write(x) : Graph::GradBuffer{};
    const Tensor dweight = g.tracks(head.weight) ? head.weight->grad : Tensor{};
    // Last chunk first: the forward left its logits in the buffer, so it needs no second GEMM.
    for (int64_t row0 = (N - 1) / chunk_rows * chunk_rows; row0 >= 0; row0 -= chunk_rows) {
      const int64_t rows = std::min(chunk_rows, N - row0);
      const Tensor dx_rows = dx.grad.data ? rows_of(dx.grad, row0, rows, C) : Tensor{};
      if (counted(labels + row0, rows, options.ignore_index) == 0) {
        // No gradient from these rows; a fresh buffer must still be written everywhere.
        if (dx.fresh) g.ops().fill_zero(dx_rows.data, tensor_bytes(dx_rows));
        continue;
      }
      const Tensor dl = rows_of(dlogits, 0, rows, V);
      const Tensor lg = row0 == kept ? rows_of(logits, 0, rows, V) : chunk_logits(row0, rows);
      g.ops().cross_entropy_backward(dl, lg, span_of(lse, row0, rows),
                                     device_labels + row0, rows, scale, sum,
                                     /*overwrite=*/true);
      g.ops().linear_backward(dx_rows, dweight, Tensor{}, dl, rows_of(x->value, row0, rows, C), w,
                              head.layout, dx.fresh);
    }
  });
  return loss;
}

}  // namespace nn
}  // namespace s2s
