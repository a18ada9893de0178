#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "format/atomic_file.h"
#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {
namespace {

constexpr uint64_t kPageBytes = 4096;

uint64_t tensor_bytes(const TensorSource& t) {
  uint64_t n = dtype_size(t.dtype);
  for (int64_t d : t.shape) {
    if (d < 0) throw Error("tensor '" + t.name + "': negative dimension in its shape");
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) throw Error("tensor '" + t.name + "': shape too large");
  }
  return n;
}

}  // namespace

TensorSource TensorSource::from_bytes(std::string name, DType dtype, std::vector<int64_t> shape,
                                      std::span<const std::byte> bytes) {
  TensorSource source{std::move(name), dtype, std::move(shape), {}};
  const uint64_t expected = tensor_bytes(source);
  if (expected != bytes.size()) {
    throw Error("tensor '" + source.name + "': " + std::to_string(bytes.size()) + " bytes given, its shape needs " +
                std::to_string(expected));
  }
  source.fill = [bytes](std::span<std::byte> out) {
    if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  };
  return source;
}

void write_safetensors(const std::string& path, std::vector<TensorSource> tensors,
                       const std::map<std::string, std::string>& metadata, const WriteProgress& progress) {
  std::set<std::string_view> names;
  for (const TensorSource& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") throw Error(path + ": invalid tensor name '" + t.name + "'");
    if (!names.insert(t.name).second) throw Error(path + ": tensor '" + t.name + "' given twice");
  }
  // Whole pages first, so that each starts on a page (8-bit S panels, which
  // kernels read in place, and which are released page by page); then by
  // element size, so that every tensor starts at a multiple of its own.
  const auto whole_pages = [](const TensorSource& t) {
    const uint64_t n = tensor_bytes(t);
    return n > 0 && n % kPageBytes == 0;
  };
  std::stable_sort(tensors.begin(), tensors.end(), [&](const TensorSource& a, const TensorSource& b) {
    const bool pa = whole_pages(a), pb = whole_pages(b);
    const size_t sa = dtype_size(a.dtype), sb = dtype_size(b.dtype);
    return pa != pb ? pa : (sa != sb ? sa > sb : a.name < b.name);
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  uint64_t largest = 0;
  for (const TensorSource& t : tensors) {
    const uint64_t n = tensor_bytes(t);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    sizes.push_back(n);
    offset += n;
    largest = std::max(largest, n);
  }
  std::string header_text = header.dump();
  header_text.append((kPageBytes - (8 + header_text.size()) % kPageBytes) % kPageBytes, ' ');  // data starts on a page
  const uint64_t header_len = header_text.size();

  AtomicFile out(path);
  out.write_all(reinterpret_cast<const std::byte*>(&header_len), 8);
  out.write_all(reinterpret_cast<const std::byte*>(header_text.data()), header_text.size());
  std::vector<std::byte> buffer(largest);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::span<std::byte> data(buffer.data(), sizes[i]);
    if (tensors[i].fill) {
      tensors[i].fill(data);
    } else if (!data.empty()) {
      std::memset(data.data(), 0, data.size());
    }
    out.write_all(data.data(), data.size());
    if (progress) progress(i + 1, tensors.size(), tensors[i].name);
  }
  out.commit();
}


}  // namespace tiledraw
