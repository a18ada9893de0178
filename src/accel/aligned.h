#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

// g++ says __SANITIZE_ADDRESS__, clang __has_feature (which g++ 12 lacks).
#if defined(__SANITIZE_ADDRESS__)
#define TILEDRAW_ADDRESS_SANITIZER
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TILEDRAW_ADDRESS_SANITIZER
#endif
#endif

namespace tiledraw::accel {

// A zero-filled array aligned to a cache line (and to a ZMM register / AMX tile row).
//
// Arrays of 4 MiB and more (packed weights, activation arenas) are mapped
// directly: the kernel hands their pages over zeroed on first touch, so packing
// a model writes each byte once instead of after a memset. (Transparent huge
// pages were tried for them: on the KVM guests we measure on, faulting fresh
// 2 MiB pages made load times bimodal, 0.28-0.83 s against 0.34-0.45 s.)
template <typename T>
class AlignedArray {
 public:
  AlignedArray() = default;
  explicit AlignedArray(size_t count) : count_(count) {
    const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    if (bytes >= kMappedBytes) {
      data_ = {static_cast<T*>(map_zeroed(bytes)), Free{bytes}};
      return;
    }
    data_ = {static_cast<T*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64)), Free{0}};
    if (!data_) throw std::bad_alloc();
    std::memset(data_.get(), 0, bytes);
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  T& operator[](size_t i) { return data_.get()[i]; }
  const T& operator[](size_t i) const { return data_.get()[i]; }
  size_t size() const { return count_; }

 private:
#ifdef TILEDRAW_ADDRESS_SANITIZER
  static constexpr size_t kMappedBytes = SIZE_MAX;  // AddressSanitizer watches heap blocks, not mappings
#else
  static constexpr size_t kMappedBytes = size_t{4} << 20;
#endif

  struct Free {
    size_t mapped_bytes;  // 0 when from aligned_alloc
    void operator()(T* p) const {
      if (mapped_bytes > 0) {
        munmap(p, mapped_bytes);
      } else {
        std::free(p);
      }
    }
  };

  static void* map_zeroed(size_t bytes) {
    void* mapped = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) throw std::bad_alloc();
    return mapped;  // page-aligned
  }

  std::unique_ptr<T, Free> data_{nullptr, Free{0}};
  size_t count_ = 0;
};

}  // namespace tiledraw::accel
