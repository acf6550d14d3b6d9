// KVCache (see the header): one allocation for every layer's keys and values, slot bookkeeping
// and the copy-only-duplicates beam reorder.
// Storage: layer-major, keys then values, each (R,Tc,Hkv,D).
#include "s2s/generate/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "s2s/error.h"
#include "s2s/ops/kv_cache_append.h"

namespace s2s {

namespace {
constexpr const char* kOp = "kv_cache";
}

void KVCache::set_backend(std::shared_ptr<Backend> backend) {
  if (backend != nullptr && backend->is_host()) backend = nullptr;  // host memory either way
  if (backend == backend_) return;
  self_.reset();
  self_device_.reset();
  self_elements_ = 0;
  cross_.reset();
  cross_device_.reset();
  cross_elements_ = 0;
  self_ranges_.reset();
  cross_ranges_.reset();
  backend_ = std::move(backend);
}

void KVCache::set_dtype(DType dtype) {
  S2S_REQUIRE(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16,
              code::kDType, kOp, "expected a float32, bfloat16 or float16 cache, got ",
              dtype_name(dtype));
  if (dtype == dtype_) return;
  self_.reset();
  self_device_.reset();
  self_elements_ = 0;
  cross_.reset();
  cross_device_.reset();
  cross_elements_ = 0;
  dtype_ = dtype;
}

void KVCache::copy_elements(uint8_t* dst, const uint8_t* src, size_t count) {
  if (count == 0) return;
  if (on_host()) {
    std::memcpy(dst, src, dtype_size(dtype_) * count);
  } else {
    const int64_t n = static_cast<int64_t>(count);
    backend_->copy_values(Tensor::contiguous(dst, dtype_, {n}),
                          Tensor::contiguous(const_cast<uint8_t*>(src), dtype_, {n}));
  }
}

void KVCache::reset(const KVCacheShape& shape, int64_t rows, int64_t capacity, int64_t max_rows) {
  S2S_REQUIRE(shape.layers > 0 && shape.kv_heads > 0 && shape.head_dim > 0 && rows > 0 &&
                  capacity > 0,
              code::kArgument, kOp, "expected positive layers, heads, head dim, rows and capacity");
  const int64_t slots = std::max(rows, max_rows);
  const size_t need = size_t(shape.layers) * 2 * size_t(slots) * size_t(capacity) *
                      size_t(shape.kv_heads) * size_t(shape.head_dim);
  if (need > self_elements_) {
    self_.reset();  // free the old buffer before asking for the bigger one
    self_device_.reset();
    const size_t bytes = need * dtype_size(dtype_);
    if (on_host()) {
      self_ = make_aligned<float>((bytes + sizeof(float) - 1) / sizeof(float));
    } else {
      self_device_ = backend_->allocate(bytes);
    }
    self_elements_ = need;
  }
  shape_ = shape;
  rows_ = rows;
  slots_ = slots;
  capacity_ = capacity;
  length_ = 0;
  // Sized for the most rows expand() may make, so nothing is allocated after reset.
  slot_.reserve(size_t(slots));
  slot_.resize(size_t(rows));
  begin_.reserve(size_t(slots));
  begin_.assign(size_t(rows), 0);
  end_.reserve(size_t(slots));
  end_.assign(size_t(rows), 0);
  new_slot_.resize(size_t(slots));
  new_begin_.resize(size_t(slots));
  free_.resize(size_t(slots));
  taken_.resize(size_t(slots));
  is_source_.resize(size_t(slots));
  for (int64_t r = 0; r < rows; ++r) slot_[size_t(r)] = int32_t(r);
  self_ranges_.uploaded.clear();  // nothing on the device describes these rows yet
}

const int32_t* KVCache::key_end(int64_t T) {
  std::fill(end_.begin(), end_.end(), int32_t(length_ + T));
  return end_.data();
}

KVCache::KeyRanges KVCache::ranges(int64_t T) {
  const int32_t* end = key_end(T);
  if (on_host()) return {slot_.data(), begin_.data(), end};
  return device_ranges(self_ranges_, rows_, slots_, slot_.data(), begin_.data(), end);
}

KVCache::KeyRanges KVCache::cross_ranges() {
  if (on_host()) return {cross_slot_.data(), cross_begin_.data(), cross_end_.data()};
  const int64_t rows = int64_t(cross_slot_.size());
  return device_ranges(cross_ranges_, rows, rows, cross_slot_.data(), cross_begin_.data(),
                       cross_end_.data());
}

// Each array sits at a fixed offset (0, capacity, 2 capacity) of a buffer sized for the most
// rows (expand() included), so every step's ops get the same device addresses; only the
// contents change.
KVCache::KeyRanges KVCache::device_ranges(DeviceRanges& d, int64_t rows, int64_t most_rows,
                                          const int32_t* slot, const int32_t* begin,
                                          const int32_t* end) {
  if (most_rows > d.capacity) {
    d.buffer.reset();
    d.buffer = backend_->allocate(sizeof(int32_t) * 3 * size_t(most_rows));
    d.capacity = most_rows;
    d.uploaded.clear();
  }
  const size_t n = size_t(d.capacity);
  d.staged.assign(3 * n, 0);
  std::copy_n(slot, rows, d.staged.begin());
  std::copy_n(begin, rows, d.staged.begin() + std::ptrdiff_t(n));
  std::copy_n(end, rows, d.staged.begin() + std::ptrdiff_t(2 * n));
  if (d.staged != d.uploaded) {
    backend_->upload(d.buffer.data(), d.staged.data(), sizeof(int32_t) * d.staged.size());
    d.uploaded = d.staged;
  }
  const int32_t* base = static_cast<const int32_t*>(d.buffer.data());
  return {base, base + n, base + 2 * n};
}

uint8_t* KVCache::layer_base(int64_t layer, int which) {
  S2S_REQUIRE(layer >= 0 && layer < shape_.layers, code::kArgument, kOp, "expected layer in [0, ",
              shape_.layers, "), got ", layer);
  const size_t per = size_t(slots_) * size_t(capacity_) * size_t(shape_.kv_heads) *
                     size_t(shape_.head_dim);
  return self_data() + (size_t(layer) * 2 + size_t(which)) * per * dtype_size(dtype_);
}

Tensor KVCache::keys(int64_t layer) {
  return Tensor::contiguous(layer_base(layer, 0), dtype_,
                            {slots_, capacity_, shape_.kv_heads, shape_.head_dim});
}

Tensor KVCache::values(int64_t layer) {
  return Tensor::contiguous(layer_base(layer, 1), dtype_,
                            {slots_, capacity_, shape_.kv_heads, shape_.head_dim});
}

void KVCache::append(int64_t layer, const Tensor& k, const Tensor& v) {
  expect_f32_heads(k, {rows_, -1, shape_.kv_heads, shape_.head_dim}, kOp, "k");
  const int64_t T = k.shape[1];
  expect_f32_heads(v, {rows_, T, shape_.kv_heads, shape_.head_dim}, kOp, "v");
  S2S_REQUIRE(length_ + T <= capacity_, code::kArgument, kOp, "expected at most ", capacity_,
              " positions (the capacity), got ", length_ + T);
  const KeyRanges r = ranges(T);  // positions [end - T, end) = [length, length + T)
  if (on_host()) {
    kv_cache_append(keys(layer), values(layer), k, v, r.slot, r.end);
  } else {
    backend_->kv_cache_append(keys(layer), values(layer), k, v, r.slot, r.end);
  }
}

void KVCache::advance(int64_t T) {
  S2S_REQUIRE(T >= 0 && length_ + T <= capacity_, code::kArgument, kOp,
              "expected to advance within the capacity ", capacity_, ", got ", length_, " + ", T);
  length_ += T;
}

void KVCache::reorder(const int32_t* src) {
  const size_t R = size_t(rows_);
  std::fill(taken_.begin(), taken_.end(), 0);
  std::fill(is_source_.begin(), is_source_.end(), 0);
  for (size_t r = 0; r < R; ++r) {
    S2S_REQUIRE(src[r] >= 0 && src[r] < rows_, code::kArgument, kOp, "expected src[", r,
                "] in [0, ", rows_, "), got ", src[r]);
    is_source_[size_t(src[r])] = 1;
  }
  size_t nfree = 0;  // slots of rows nobody continues
  for (size_t r = 0; r < R; ++r) {
    if (!is_source_[r]) free_[nfree++] = slot_[r];
  }
  const size_t pos = size_t(shape_.kv_heads * shape_.head_dim);
  const size_t slot_bytes = size_t(capacity_) * pos * dtype_size(dtype_);
  const size_t filled = size_t(length_) * pos;
  for (size_t r = 0; r < R; ++r) {
    const size_t s = size_t(src[r]);
    new_begin_[r] = begin_[s];
    if (!taken_[s]) {
      taken_[s] = 1;
      new_slot_[r] = slot_[s];
      continue;
    }
    const int32_t to = free_[--nfree];  // duplicates == free slots, so one is always left
    for (int64_t l = 0; l < shape_.layers; ++l) {
      for (int which = 0; which < 2; ++which) {
        uint8_t* base = layer_base(l, which);
        copy_elements(base + size_t(to) * slot_bytes, base + size_t(slot_[s]) * slot_bytes,
                      filled);
      }
    }
    new_slot_[r] = to;
  }
  std::copy_n(new_slot_.begin(), R, slot_.begin());
  std::copy_n(new_begin_.begin(), R, begin_.begin());
}

void KVCache::expand(int64_t copies) {
  S2S_REQUIRE(copies >= 1 && rows_ * copies <= slots_, code::kArgument, kOp, "expected ",
              rows_, " rows x ", copies, " copies to fit the ", slots_, " slots reserved");
  if (copies == 1) return;
  const size_t R = size_t(rows_), S = size_t(slots_);
  std::fill(taken_.begin(), taken_.end(), 0);
  for (size_t r = 0; r < R; ++r) taken_[size_t(slot_[r])] = 1;
  size_t nfree = 0;
  for (size_t s = 0; s < S; ++s) {
    if (!taken_[s]) free_[nfree++] = int32_t(s);
  }
  const size_t pos = size_t(shape_.kv_heads * shape_.head_dim);
  const size_t slot_bytes = size_t(capacity_) * pos * dtype_size(dtype_);
  const size_t filled = size_t(length_) * pos;
  const size_t R2 = R * size_t(copies);
  for (size_t r = 0; r < R2; ++r) {
    const size_t src = r / size_t(copies);
    new_begin_[r] = begin_[src];
    if (r % size_t(copies) == 0) {
      new_slot_[r] = slot_[src];
      continue;
    }
    const int32_t to = free_[--nfree];
    for (int64_t l = 0; l < shape_.layers; ++l) {
      for (int which = 0; which < 2; ++which) {
        uint8_t* base = layer_base(l, which);
        copy_elements(base + size_t(to) * slot_bytes, base + size_t(slot_[src]) * slot_bytes,
                      filled);
      }
    }
    new_slot_[r] = to;
  }
  rows_ = int64_t(R2);
  slot_.resize(R2);
  begin_.resize(R2);
  end_.resize(R2);
  std::copy_n(new_slot_.begin(), R2, slot_.begin());
  std::copy_n(new_begin_.begin(), R2, begin_.begin());
}

void KVCache::reset_cross(const KVCacheShape& shape, int64_t items, int64_t enc_len,
                          int64_t rows_per_item) {
  S2S_REQUIRE(shape.layers > 0 && items > 0 && enc_len > 0 && rows_per_item > 0,
              code::kArgument, kOp, "expected positive cross layers, items, length and rows per item");
  const size_t need = size_t(shape.layers) * 2 * size_t(items) * size_t(enc_len) *
                      size_t(shape.kv_heads) * size_t(shape.head_dim);
  if (need > cross_elements_) {
    cross_.reset();
    cross_device_.reset();
    const size_t bytes = need * dtype_size(dtype_);
    if (on_host()) {
      cross_ = make_aligned<float>((bytes + 3) / 4);
    } else {
      cross_device_ = backend_->allocate(bytes);
    }
    cross_elements_ = need;
  }
  cross_shape_ = shape;
  items_ = items;
  enc_len_ = enc_len;
  rows_per_item_ = rows_per_item;
  const size_t R = size_t(items * rows_per_item);
  cross_slot_.resize(R);
  cross_begin_.assign(R, 0);
  cross_end_.assign(R, int32_t(enc_len));
  for (size_t r = 0; r < R; ++r) cross_slot_[r] = int32_t(int64_t(r) / rows_per_item);
  cross_ranges_.uploaded.clear();
}

Tensor KVCache::cross_keys(int64_t layer) {
  S2S_REQUIRE(layer >= 0 && layer < cross_shape_.layers, code::kArgument, kOp,
              "expected cross layer in [0, ", cross_shape_.layers, "), got ", layer);
  const int64_t per = items_ * enc_len_ * cross_shape_.kv_heads * cross_shape_.head_dim;
  return Tensor::contiguous(cross_data() + size_t(layer * 2 * per) * dtype_size(dtype_), dtype_,
                            {items_, enc_len_, cross_shape_.kv_heads, cross_shape_.head_dim});
}

Tensor KVCache::cross_values(int64_t layer) {
  Tensor t = cross_keys(layer);
  t.data = static_cast<uint8_t*>(t.data) + size_t(t.numel()) * dtype_size(dtype_);
  return t;
}

void KVCache::set_cross_length(int64_t item, int32_t len) {
  S2S_REQUIRE(item >= 0 && item < items_ && len >= 0 && len <= enc_len_, code::kArgument, kOp,
              "expected item in [0, ", items_, ") and length in [0, ", enc_len_, "], got ", item,
              " and ", len);
  for (int64_t k = 0; k < rows_per_item_; ++k) {
    cross_end_[size_t(item * rows_per_item_ + k)] = len;
  }
}

}  // namespace s2s
