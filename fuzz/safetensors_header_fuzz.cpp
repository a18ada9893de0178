// The safetensors reader on arbitrary bytes: the header length, the JSON, the
// tensor table and its offsets. tiledraw::Error is the expected answer to a bad
// file; anything else (a crash, another exception, a sanitizer report, a
// broken invariant below) is a bug.
//
// The data is mapped, and ASan does not watch mapped memory, so a view past
// the end of the file could go unnoticed when the next page happens to be
// mapped: the invariants are checked explicitly against the input instead.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace {

using tiledraw::SafetensorsFile;
using tiledraw::TensorInfo;

void check_file(const SafetensorsFile& file, const uint8_t* input, size_t size) {
  fuzz::check(file.file_size() == size, "file_size differs from the input's size");
  fuzz::check(file.header_size() >= 8 + 2 && file.header_size() <= size, "header_size outside the file");

  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : file.tensors()) {
    fuzz::check(!t.name.empty() && file.find(t.name) == &t, "find() does not return the listed tensor");
    // numel() multiplies the dimensions in int64, left to right: every partial
    // product must fit.
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      fuzz::check(d >= 0 && !__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements) &&
                      elements <= static_cast<uint64_t>(INT64_MAX),
                  "a shape whose element count overflows int64 was accepted");
    }
    fuzz::check(static_cast<uint64_t>(t.numel()) == elements, "numel() differs from the shape's product");
    fuzz::check(t.nbytes == elements * tiledraw::dtype_size(t.dtype), "nbytes differs from the shape's size");
    fuzz::check(t.file_offset >= file.header_size(), "a tensor starts inside the header");
    fuzz::check(t.file_offset <= size && t.nbytes <= size - t.file_offset, "a tensor runs past the end of the file");

    // The view must be exactly these bytes of the file; reading it all also
    // faults if it points anywhere unmapped.
    const std::span<const std::byte> view = file.data(t);
    fuzz::check(view.size() == t.nbytes, "data() has the wrong size");
    fuzz::check(view.empty() || std::memcmp(view.data(), input + t.file_offset, view.size()) == 0,
                "data() is not the file's bytes at file_offset");
    if (t.nbytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->file_offset < b->file_offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    fuzz::check(by_offset[i]->file_offset >= by_offset[i - 1]->file_offset + by_offset[i - 1]->nbytes,
                "two tensors overlap");
  }

  size_t metadata_bytes = 0;
  for (const auto& [key, value] : file.metadata()) metadata_bytes += key.size() + value.size();
  fuzz::check(metadata_bytes <= size, "metadata larger than the file");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile input;
  const std::string& path = input.write(data, size);
  try {
    SafetensorsFile opened = SafetensorsFile::open(path);
    const SafetensorsFile file = std::move(opened);  // the moved-to object must keep valid views
    check_file(file, data, size);
  } catch (const tiledraw::Error& error) {
    fuzz::refused(error);  // the expected outcome for most inputs
  }
  return 0;
}
