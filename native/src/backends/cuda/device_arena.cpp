// DeviceArena bookkeeping (device_arena.h). Blocks are filled in order; a block too small for a
// request is skipped (its tail stays unused until the next rewind), so the arena's behaviour
// depends only on the sequence of requests, never on addresses.
#include "backends/cuda/device_arena.h"

#include "s2s/error.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "cuda.arena";
size_t round_up(size_t n) {
  return (n + DeviceArena::kAlignment - 1) / DeviceArena::kAlignment * DeviceArena::kAlignment;
}
}  // namespace

DeviceArena::DeviceArena(BlockSource source, size_t block_bytes)
    : source_(std::move(source)), block_bytes_(round_up(block_bytes == 0 ? 1 : block_bytes)) {
  S2S_REQUIRE(source_.allocate && source_.release, code::kInternal, kOp,
              "expected a block source with allocate and release");
}

DeviceArena::~DeviceArena() {
  for (const Block& b : blocks_) source_.release(b.data);
}

void* DeviceArena::allocate(size_t bytes) {
  const size_t need = round_up(bytes == 0 ? 1 : bytes);
  // The current block or any later (already reserved) one that fits.
  while (current_ < blocks_.size()) {
    Block& b = blocks_[current_];
    if (b.size - offset_ >= need) {
      void* p = b.data + offset_;
      offset_ += need;
      const size_t used = bytes_in_use();
      if (used > peak_) peak_ = used;
      if (source_.mark) source_.mark(p, bytes, true);
      return p;
    }
    ++current_;
    offset_ = 0;
  }
  const size_t size = need > block_bytes_ ? need : block_bytes_;
  void* p = source_.allocate(size);
  if (p == nullptr) {
    // Stay on the last block so a later, smaller request can still use its tail.
    if (!blocks_.empty()) {
      current_ = blocks_.size() - 1;
      offset_ = blocks_.back().size;
    }
    fail(code::kOutOfMemory, kOp, "expected ", size, " more bytes of GPU memory for a ", bytes,
         "-byte request, but the device has no more (the arena holds ", bytes_reserved(),
         " bytes in ", blocks_.size(), " blocks); lower the batch size or sequence length, or "
         "(training) turn on train.gradient_checkpointing and train.chunked_loss");
  }
  blocks_.push_back(Block{static_cast<uint8_t*>(p), size});
  current_ = blocks_.size() - 1;
  offset_ = need;
  const size_t used = bytes_in_use();
  if (used > peak_) peak_ = used;
  if (source_.mark) {
    source_.mark(p, size, false);
    source_.mark(p, bytes, true);
  }
  return p;
}

void DeviceArena::rewind(Mark m) {
  const bool valid = blocks_.empty() ? (m.block == 0 && m.offset == 0)
                                     : (m.block < current_ || (m.block == current_ && m.offset <= offset_));
  S2S_REQUIRE(valid, code::kArgument, kOp, "expected a mark at or before the current point (block ",
              current_, ", offset ", offset_, "), got block ", m.block, ", offset ", m.offset);
  current_ = m.block;
  offset_ = m.offset;
}

void DeviceArena::release_all() {
  S2S_REQUIRE(current_ == 0 && offset_ == 0, code::kArgument, kOp,
              "expected release_all after reset(), got ", bytes_in_use(), " bytes still in use");
  for (const Block& b : blocks_) source_.release(b.data);
  blocks_.clear();
}

size_t DeviceArena::bytes_in_use() const {
  size_t n = 0;
  for (size_t i = 0; i < current_ && i < blocks_.size(); ++i) n += blocks_[i].size;
  return n + (current_ < blocks_.size() ? offset_ : 0);
}

size_t DeviceArena::bytes_reserved() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += b.size;
  return n;
}

}  // namespace cuda
}  // namespace s2s
