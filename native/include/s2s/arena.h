// Arena: a bump allocator for activations and scratch. Allocations are 64-byte aligned (one
// cache line, one zmm register); nothing is freed one by one: reset() (or rewinding to a mark)
// releases everything after that point at once, and capacity grows by adding blocks, so
// pointers already handed out stay valid until the reset.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "s2s/tensor.h"

namespace s2s {

class Arena {
 public:
  explicit Arena(size_t block_bytes = size_t(64) << 20);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* allocate(size_t bytes);  // 64-byte aligned; throws S2S_OUT_OF_MEMORY
  template <typename T>
  T* allocate_array(size_t count) { return static_cast<T*>(allocate(count * sizeof(T))); }
  Tensor tensor(DType dtype, std::initializer_list<int64_t> shape);  // uninitialised

  struct Mark { size_t block; size_t offset; };
  Mark mark() const;
  void rewind(Mark m);  // frees everything allocated after m
  void reset() { rewind(Mark{0, 0}); }

  size_t bytes_in_use() const;
  size_t bytes_reserved() const;
  // The most bytes_in_use() has been since construction (or reset_peak), block padding included.
  size_t peak_bytes_in_use() const { return peak_; }
  void reset_peak() { peak_ = bytes_in_use(); }

 private:
  struct Block { uint8_t* data; size_t size; };
  std::vector<Block> blocks_;
  size_t current_ = 0;  // index of the block being filled
  size_t offset_ = 0;   // bytes used in it
  size_t before_ = 0;   // bytes of the blocks before current_
  size_t peak_ = 0;
  size_t block_bytes_;
};

// 64-byte aligned heap buffer that frees itself; for scratch that outlives one call.
struct AlignedFree { void operator()(void* p) const; };
template <typename T>
using AlignedPtr = std::unique_ptr<T[], AlignedFree>;
void* aligned_alloc_bytes(size_t bytes);  // throws S2S_OUT_OF_MEMORY
template <typename T>
AlignedPtr<T> make_aligned(size_t count) {
  return AlignedPtr<T>(static_cast<T*>(aligned_alloc_bytes(count * sizeof(T))));
}

}  // namespace s2s
