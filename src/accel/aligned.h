#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

// g++ says __SANITIZE_ADDRESS__, clang __has_feature (which g++ 12 lacks).
#if defined(__SANITIZE_ADDRESS__)
#define TILEDRAW_ADDRESS_SANITIZER
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TILEDRAW_ADDRESS_SANITIZER
#endif
#endif

namespace tiledraw::accel {

// Large blocks (packed weights, activation arenas, weights converted at load)
// are mapped directly and populated in one call: the kernel hands them over
// zeroed, so packing a model writes each byte once instead of after a memset,
// and without a page fault per 4 KiB, which costs microseconds under the
// hypervisors we run on (a third of a model's load when faulted page by
// page). Blocks of 2 MiB and more ask for transparent huge pages: SD 1.5's
// load, median of six, 2.30 -> 1.86 s, though one run in three still takes
// 2.6-2.8 s (the kernel compacting memory for them; with the DiT alone an
// earlier session saw 0.28-0.83 s against 0.34-0.45 s without them).
#ifdef TILEDRAW_ADDRESS_SANITIZER
inline constexpr size_t kMappedBytes = SIZE_MAX;  // AddressSanitizer watches heap blocks, not mappings
#else
inline constexpr size_t kMappedBytes = size_t{64} << 10;
#endif

inline void* map_populated(size_t bytes) {
  void* mapped = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) throw std::bad_alloc();
  if (bytes >= (size_t{2} << 20)) madvise(mapped, bytes, MADV_HUGEPAGE);
  madvise(mapped, bytes, MADV_POPULATE_WRITE);  // when refused, pages come on first touch
  return mapped;  // page-aligned
}

// A std::vector allocator for buffers filled right after they are sized: large
// ones mapped as above, and elements left as allocated (zeros from the kernel,
// or whatever the heap held) instead of value-initialised one by one.
template <typename T>
struct PopulatedAllocator {
  using value_type = T;
  PopulatedAllocator() = default;
  template <typename U>
  PopulatedAllocator(const PopulatedAllocator<U>&) {}  // NOLINT(google-explicit-constructor)

  T* allocate(size_t count) {
    const size_t bytes = count * sizeof(T);
    if (bytes >= kMappedBytes) return static_cast<T*>(map_populated(bytes));
    if (T* p = static_cast<T*>(std::malloc(bytes > 0 ? bytes : 1))) return p;
    throw std::bad_alloc();
  }
  void deallocate(T* p, size_t count) {
    if (count * sizeof(T) >= kMappedBytes) {
      munmap(p, count * sizeof(T));
    } else {
      std::free(p);
    }
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      ::new (static_cast<void*>(p)) U;
    } else {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  }
  template <typename U>
  bool operator==(const PopulatedAllocator<U>&) const { return true; }
};

// A zero-filled array aligned to a cache line (and to a ZMM register / AMX tile row).
template <typename T>
class AlignedArray {
 public:
  AlignedArray() = default;
  explicit AlignedArray(size_t count) : count_(count) {
    const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    if (bytes >= kMappedBytes) {
      data_ = {static_cast<T*>(map_populated(bytes)), Free{bytes}};
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

  std::unique_ptr<T, Free> data_{nullptr, Free{0}};
  size_t count_ = 0;
};

}  // namespace tiledraw::accel
