// Arena and aligned heap buffers.
#include "s2s/arena.h"

#include <cstdlib>

namespace s2s {

static constexpr size_t kAlign = 64;

void* aligned_alloc_bytes(size_t bytes) {
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
  if (p == nullptr) fail(code::kOutOfMemory, "alloc", "could not allocate ", bytes, " bytes");
  return p;
}

void AlignedFree::operator()(void* p) const { std::free(p); }

Arena::Arena(size_t block_bytes) : block_bytes_(block_bytes < kAlign ? kAlign : block_bytes) {}

Arena::~Arena() {
  for (Block& b : blocks_) std::free(b.data);
}

void* Arena::allocate(size_t bytes) {
  const size_t need = (bytes + kAlign - 1) / kAlign * kAlign;
  while (current_ < blocks_.size()) {
    Block& b = blocks_[current_];
    if (offset_ + need <= b.size) {
      void* p = b.data + offset_;
      offset_ += need;
      if (before_ + offset_ > peak_) peak_ = before_ + offset_;
      return p;
    }
    ++current_;  // this block is full for this request; later blocks may be bigger
    before_ += b.size;
    offset_ = 0;
  }
  const size_t size = need > block_bytes_ ? need : block_bytes_;
  blocks_.push_back(Block{static_cast<uint8_t*>(aligned_alloc_bytes(size)), size});
  current_ = blocks_.size() - 1;
  offset_ = need;
  if (before_ + offset_ > peak_) peak_ = before_ + offset_;
  return blocks_.back().data;
}

Tensor Arena::tensor(DType dtype, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  void* p = allocate(static_cast<size_t>(n) * dtype_size(dtype));
  return Tensor::contiguous(p, dtype, shape);
}

Arena::Mark Arena::mark() const { return Mark{current_, offset_}; }

void Arena::rewind(Mark m) {
  current_ = m.block;
  offset_ = m.offset;
  before_ = 0;
  for (size_t i = 0; i < current_ && i < blocks_.size(); ++i) before_ += blocks_[i].size;
}

size_t Arena::bytes_in_use() const { return before_ + offset_; }

size_t Arena::bytes_reserved() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += b.size;
  return n;
}

}  // namespace s2s
