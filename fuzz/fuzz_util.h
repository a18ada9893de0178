#pragma once

// Shared by the fuzz targets: files for code that reads and writes paths, a
// reader that decodes structured inputs from the fuzzer's bytes, and a
// safetensors serializer for the targets that build their files.

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tiledraw/dtype.h"

namespace fuzz {

// Aborts with a message: for set-up failures and for broken invariants, which
// libFuzzer then reports as a crash with this input.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz: %s\n", what);
  std::abort();
}

inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// TILEDRAW_FUZZ_VERBOSE=1 makes the targets say what they do with an input
// (run one on a file): to see how far a seed gets, or to read a crash.
inline bool verbose() {
  static const bool on = std::getenv("TILEDRAW_FUZZ_VERBOSE") != nullptr;
  return on;
}

// Inputs the code under test refuses are the expected case.
inline void refused(const std::exception& error) {
  if (verbose()) std::fprintf(stderr, "refused: %s\n", error.what());
}

// An anonymous in-memory file, made once per process and rewritten for every
// input: the safetensors reader maps a path, and /proc/self/fd/N is one that
// costs no disk I/O.
class MemFile {
 public:
  MemFile() : fd_(memfd_create("tiledraw-fuzz", MFD_CLOEXEC)) {
    check(fd_ >= 0, "memfd_create failed");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  ~MemFile() { close(fd_); }

  // Replaces the contents; returns the path to open.
  const std::string& write(const void* data, size_t size) {
    check(ftruncate(fd_, static_cast<off_t>(size)) == 0, "ftruncate of the memfd failed");
    check(size == 0 || pwrite(fd_, data, size, 0) == static_cast<ssize_t>(size), "pwrite to the memfd failed");
    return path_;
  }
  const std::string& write(const std::string& bytes) { return write(bytes.data(), bytes.size()); }

 private:
  int fd_;
  std::string path_;
};

// A folder of this process's own for writers that need a real path (they
// write a temporary file beside it and rename). On tmpfs, so their fsync costs
// nothing; removed at exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp") + std::string("/tiledraw-fuzz-XXXXXX");
    check(mkdtemp(pattern.data()) != nullptr, "mkdtemp failed");
    path_ = pattern;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Reads a fuzz input front to back. Past the end every read gives zeros, so any
// input decodes to something; fuzz/make_corpus.py writes seeds in this order.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  uint8_t byte() { return empty() ? 0 : data_[pos_++]; }
  uint16_t u16() { return static_cast<uint16_t>(byte() | byte() << 8); }
  // A whole number in [0, n), from one byte (n <= 256).
  size_t below(size_t n) { return n ? byte() % n : 0; }
  template <typename T, size_t N>
  const T& pick(const T (&choices)[N]) {
    return choices[below(N)];
  }
  // Up to `n` bytes: fewer when the input runs out.
  std::string bytes(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// One tensor of a file a target builds; `bytes` must hold exactly its size.
struct TensorBytes {
  std::string name;
  tiledraw::DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// The bytes a tensor of this shape holds; UINT64_MAX when that overflows.
inline uint64_t byte_size(tiledraw::DType dtype, const std::vector<int64_t>& shape) {
  uint64_t n = tiledraw::dtype_size(dtype);
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return UINT64_MAX;
  }
  return n;
}

// A safetensors file of these tensors, in this order, contiguous. Names must
// be unique (a JSON object keeps only one of two equal keys).
inline std::string safetensors_bytes(const std::vector<TensorBytes>& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const TensorBytes& t : tensors) {
    const uint64_t begin = data.size();
    data += t.bytes;
    header[t.name] = {{"dtype", tiledraw::dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  // Invalid UTF-8 in a name or value (raw fuzz bytes) becomes U+FFFD: JSON text must be UTF-8.
  const std::string text = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  const uint64_t length = text.size();
  std::string file(reinterpret_cast<const char*>(&length), 8);
  return file + text + data;
}

// Deterministic small values for a tensor: finite, mixed signs, never all zero
// (a float of any width, or an integer, as the dtype says).
inline std::string small_values(tiledraw::DType dtype, uint64_t count) {
  using tiledraw::DType;
  std::string out;
  out.reserve(count * tiledraw::dtype_size(dtype));
  for (uint64_t i = 0; i < count; ++i) {
    const int whole = static_cast<int>((i * 7 + 3) % 13) - 6;  // -6..6
    const float value = static_cast<float>(whole) / 8.0f;
    const auto append = [&](const auto& v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    switch (dtype) {
      case DType::F32: append(value); break;
      case DType::F64: append(static_cast<double>(value)); break;
      case DType::F16: append(tiledraw::float_to_half(value)); break;
      case DType::BF16: append(tiledraw::float_to_bf16(value)); break;
      default: {
        const int64_t v = whole;
        out.append(reinterpret_cast<const char*>(&v), tiledraw::dtype_size(dtype));  // little-endian low bytes
      }
    }
  }
  return out;
}

}  // namespace fuzz
