#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tiledraw/dtype.h"

namespace tiledraw {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t file_offset;  // absolute offset of the first byte in the file
  uint64_t nbytes;

  int64_t numel() const;
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[2, 3]"

// Largest header the reader accepts, as the reference implementation does.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// A safetensors file mapped read-only. Opening validates the whole header
// (bounds, JSON, dtypes, sizes, offsets, overlaps) so that every view handed
// out afterwards is inside the file. Views are zero-copy and live as long as
// the file object.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t header_size() const { return header_size_; }
  // In the order the header lists them.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const TensorInfo* find(std::string_view name) const;
  const TensorInfo& at(std::string_view name) const;  // throws Error naming file and tensor
  std::span<const std::byte> data(const TensorInfo& tensor) const;
  // Maps the tensor's pages in one call before it is read through (faulting
  // them in one by one costs far more under a hypervisor).
  void prefetch(const TensorInfo& tensor) const;
  // The tensor was copied (converted, packed): its pages may leave memory.
  // data() stays valid; a later read brings them back from the file.
  void release(const TensorInfo& tensor) const;

 private:
  SafetensorsFile() = default;
  void unmap();

  std::string path_;
  const std::byte* base_ = nullptr;
  uint64_t file_size_ = 0;
  uint64_t header_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write. `fill` receives a buffer of exactly the tensor's byte
// size and writes its contents; it may throw to abandon the whole file.
struct TensorSource {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::function<void(std::span<std::byte>)> fill;

  static TensorSource from_bytes(std::string name, DType dtype, std::vector<int64_t> shape,
                                 std::span<const std::byte> bytes);
};

// Called after each tensor is written: (tensors done, tensors in all, name).
using WriteProgress = std::function<void(size_t, size_t, const std::string&)>;

// Writes a safetensors file through a temporary file in the same folder that is
// renamed over `path` only once complete and synced: a failure or interruption
// never leaves a partial file under `path`. Tensors are laid out contiguously,
// largest element size first, so each one is aligned to its element size.
void write_safetensors(const std::string& path, std::vector<TensorSource> tensors,
                       const std::map<std::string, std::string>& metadata,
                       const WriteProgress& progress = {});

// Makes SIGINT and SIGTERM remove the temporary file of a write in progress
// before the process dies. For programs; a library leaves signals alone.
void remove_partial_files_on_interrupt();

}  // namespace tiledraw
