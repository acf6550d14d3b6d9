// DeviceArena: the bump allocator for GPU activations and scratch, the device twin of s2s::Arena.
// It hands out 256-byte aligned pieces of large blocks (cudaMalloc is slow and synchronising,
// so it is called once per block, never per tensor); nothing is freed one by one: rewind(mark)
// or reset() releases everything after a point at once, and blocks stay reserved for the next
// step. Growth adds a block; pointers already handed out stay valid until the rewind.
// Plain C++: the memory comes from a BlockSource (cudaMalloc in context.cu, the heap in tests),
// so the bookkeeping is tested on machines without a GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace s2s {
namespace cuda {

struct BlockSource {
  // Returns nullptr when the memory is not there (the arena turns it into S2S_OUT_OF_MEMORY).
  std::function<void*(size_t bytes)> allocate;
  std::function<void(void* p)> release;
  // Optional, where blocks are host memory under AddressSanitizer (the SIMT simulator): told
  // which bytes of a new block are unusable (all of it) and which bytes each allocate hands out,
  // so a kernel's access past its tensor, into padding or never-used space, is reported. Nothing
  // is marked unusable again on a rewind: a recorded pass's kernels read their scratch at replay.
  std::function<void(void* p, size_t bytes, bool usable)> mark;
};

class DeviceArena {
 public:
  static constexpr size_t kAlignment = 256;  // cudaMalloc's own alignment; fits any vector load

  DeviceArena(BlockSource source, size_t block_bytes);
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // `bytes` rounded up to kAlignment; a request larger than block_bytes gets a block of its own.
  // Throws S2S_OUT_OF_MEMORY naming the request and what the arena holds when the source fails.
  void* allocate(size_t bytes);
  template <typename T>
  T* allocate_array(size_t count) { return static_cast<T*>(allocate(count * sizeof(T))); }

  struct Mark { size_t block; size_t offset; };
  Mark mark() const { return Mark{current_, offset_}; }
  void rewind(Mark m);  // frees everything allocated after m (throws S2S_ARGUMENT for a mark from the future)
  void reset() { rewind(Mark{0, 0}); }
  // Returns every block to the source (after reset only; throws S2S_ARGUMENT otherwise).
  void release_all();

  size_t bytes_in_use() const;    // up to the current point, counting alignment padding
  size_t bytes_reserved() const;  // sum of block sizes
  size_t peak_bytes_in_use() const { return peak_; }  // since construction or reset_peak()
  void reset_peak() { peak_ = bytes_in_use(); }
  size_t block_count() const { return blocks_.size(); }

 private:
  struct Block { uint8_t* data; size_t size; };
  BlockSource source_;
  std::vector<Block> blocks_;
  size_t current_ = 0;  // block being filled
  size_t offset_ = 0;   // bytes used in it
  size_t block_bytes_;
  size_t peak_ = 0;
};

// Rewinds the arena to where it was at construction when the scope ends (also on an exception):
// an op's scratch lives exactly as long as the op's launches need it, because later kernels on
// the same stream run after them.
class ArenaScope {
 public:
  explicit ArenaScope(DeviceArena& arena) : arena_(arena), mark_(arena.mark()) {}
  ~ArenaScope() { arena_.rewind(mark_); }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  DeviceArena& arena_;
  DeviceArena::Mark mark_;
};

}  // namespace cuda
}  // namespace s2s
