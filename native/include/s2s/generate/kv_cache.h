// KVCache: the keys and values of every decoder self-attention layer for the sequences being
// generated, allocated once for the whole generation (capacity = the longest total length), so
// a decoding step allocates nothing; and for encoder-decoder models (T5) the cross-attention
// keys/values of the encoder output, computed once per input and shared by its beams.
// Memory only grows: a cache reused by the next generate call keeps its buffers.
// Legend: R rows (sequences decoded together), Tc capacity (positions per row), L layers,
// Hkv key/value heads, D head dim, I inputs (T5: encoder items), Te encoder length.
//
// The storage lives on a backend (set_backend; the CPU unless told otherwise), so a model on a
// GPU decodes with its cache in GPU memory: append, reorder and expand copy through the backend,
// and T5's encoder writes its cross-attention keys/values there.
//
// Rows live in slots: row r's positions are slot slots()[r] of the (R,Tc,Hkv,D) storage. Beam
// search reorders rows by remapping slots and copies a slot only when two rows continue the
// same one (reorder), instead of gathering the whole cache every step.
//
// The index arrays the ops read (each row's slot and key range) reach a device once per change,
// not once per layer: ranges() uploads them when they differ from the last upload, so a
// decoding step uploads them once, at its first layer, to the same device addresses each time.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "s2s/arena.h"
#include "s2s/nn/backend.h"
#include "s2s/tensor.h"

namespace s2s {

struct KVCacheShape {
  int64_t layers = 0, kv_heads = 0, head_dim = 0;
};

class KVCache {
 public:
  // Per row: its slot and its key range [begin, end), in the storage's memory (host or device),
  // valid until the next ranges() / cross_ranges() call changes them.
  struct KeyRanges {
    const int32_t* slot = nullptr;
    const int32_t* begin = nullptr;
    const int32_t* end = nullptr;
  };

  // Where the self-attention keys and values live (null: host memory). A different backend than
  // before drops the storage; the next reset allocates it there.
  void set_backend(std::shared_ptr<Backend> backend);
  bool on_host() const { return backend_ == nullptr || backend_->is_host(); }
  // The self-attention keys' and values' element type: F32 (the default), or BF16 / F16, half
  // the memory and half the bytes decoding reads (kv_cache_append rounds each value as it goes
  // in; T5's encoder keys and values too, rounded as encode_to_cache writes them). Another
  // dtype than before drops the storage; the next reset / reset_cross allocates it.
  void set_dtype(DType dtype);
  DType dtype() const { return dtype_; }

  // Prepares `rows` empty rows of `capacity` positions for a self-attention of this shape; every
  // row starts at key_begin 0 in slot r. max_rows > rows reserves slots for expand().
  void reset(const KVCacheShape& shape, int64_t rows, int64_t capacity, int64_t max_rows = 0);

  int64_t rows() const { return rows_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // positions filled, the same for every row
  const KVCacheShape& shape() const { return shape_; }

  // Row r's first attended position: the left padding before it is never a key (set it right
  // after reset, before the prompt goes in).
  int32_t* key_begin() { return begin_.data(); }
  const int32_t* slots() const { return slot_.data(); }
  // length() + T for every row: the key_end of an attention over T new positions.
  const int32_t* key_end(int64_t T);
  // slots(), key_begin() and key_end(T) where the ops read them: the host arrays, or their copy
  // on the device (uploaded when they changed since the last call).
  KeyRanges ranges(int64_t T);

  // Layer l's storage, (S,Tc,Hkv,D) indexed by slot (S = the slots reserved, >= R).
  Tensor keys(int64_t layer);
  Tensor values(int64_t layer);
  // Writes k, v (R,T,Hkv,D) at positions [length, length + T) of each row's slot (one
  // kv_cache_append op; k and v may be views into a fused projection, expect_f32_heads).
  void append(int64_t layer, const Tensor& k, const Tensor& v);
  // After every layer appended T positions.
  void advance(int64_t T);

  // Beam search: new row r continues old row src[r] (keys, values and key_begin). Rows whose
  // source is taken once keep its slot; each further row continuing the same source gets a free
  // slot (one whose row nobody continues) and a copy of the filled positions.
  void reorder(const int32_t* src);

  // Every row becomes `copies` rows, new row r continuing old row r / copies: a prompt prefilled
  // once, then decoded as several beams or samples. Needs rows() * copies <= the reserved slots.
  void expand(int64_t copies);

  // ---- cross-attention (encoder-decoder) ----
  // Prepares I items of Te encoder positions; row r reads item r / rows_per_item.
  void reset_cross(const KVCacheShape& shape, int64_t items, int64_t enc_len,
                   int64_t rows_per_item);
  // Layer l's encoder keys/values, (I,Te,H,D), in dtype().
  Tensor cross_keys(int64_t layer);
  Tensor cross_values(int64_t layer);
  // Per row: the item it reads, and its encoder key range [0, valid length).
  const int32_t* cross_slots() const { return cross_slot_.data(); }
  const int32_t* cross_begin() const { return cross_begin_.data(); }
  const int32_t* cross_end() const { return cross_end_.data(); }
  // The three where the ops read them (as ranges()).
  KeyRanges cross_ranges();
  // Item i's encoder input has `len` real tokens (right padding after them is never a key).
  void set_cross_length(int64_t item, int32_t len);
  int64_t cross_rows_per_item() const { return rows_per_item_; }

  size_t bytes() const { return (self_elements_ + cross_elements_) * dtype_size(dtype_); }

 private:
  uint8_t* layer_base(int64_t layer, int which);  // which: 0 keys, 1 values
  uint8_t* self_data() {
    return static_cast<uint8_t*>(on_host() ? static_cast<void*>(self_.get()) : self_device_.data());
  }
  // count elements of dtype_, within the self-attention storage's memory
  void copy_elements(uint8_t* dst, const uint8_t* src, size_t count);

  // A device copy of (slot, begin, end), each at a fixed offset in one buffer, re-uploaded only
  // when the host arrays differ from what it holds.
  struct DeviceRanges {
    Buffer buffer;
    int64_t capacity = 0;                     // entries per array
    std::vector<int32_t> staged, uploaded;    // 3 x capacity, host side
    void reset() { buffer.reset(); capacity = 0; staged.clear(); uploaded.clear(); }
  };
  KeyRanges device_ranges(DeviceRanges& d, int64_t rows, int64_t most_rows,
                          const int32_t* slot, const int32_t* begin, const int32_t* end);

  KVCacheShape shape_;
  int64_t rows_ = 0, slots_ = 0, capacity_ = 0, length_ = 0;
  std::shared_ptr<Backend> backend_;
  DType dtype_ = DType::F32;
  AlignedPtr<float> self_;  // host storage (16-bit elements: two to a float)
  Buffer self_device_;      // or the backend's
  size_t self_elements_ = 0;
  std::vector<int32_t> slot_, begin_, end_;
  // reorder scratch, sized by reset
  std::vector<int32_t> new_slot_, new_begin_, free_;
  std::vector<uint8_t> taken_, is_source_;

  KVCacheShape cross_shape_;
  int64_t items_ = 0, enc_len_ = 0, rows_per_item_ = 1;
  uint8_t* cross_data() {
    return static_cast<uint8_t*>(on_host() ? static_cast<void*>(cross_.get())
                                           : cross_device_.data());
  }
  AlignedPtr<float> cross_;  // host storage (16-bit elements: two to a float)
  Buffer cross_device_;      // or the backend's
  size_t cross_elements_ = 0;
  std::vector<int32_t> cross_slot_, cross_begin_, cross_end_;

  DeviceRanges self_ranges_, cross_ranges_;  // after backend_: their buffers go first
};

}  // namespace s2s
