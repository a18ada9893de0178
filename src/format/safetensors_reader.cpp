#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {
namespace {

using json = nlohmann::ordered_json;

// Parses and checks one entry of the header's tensor table.
class HeaderChecker {
 public:
  HeaderChecker(const std::string& path, uint64_t data_size) : path_(path), data_size_(data_size) {}

  [[noreturn]] void fail(const std::string& problem) const { throw Error(path_ + ": " + problem); }
  [[noreturn]] void fail(const std::string& tensor, const std::string& problem) const {
    fail("tensor '" + tensor + "': " + problem);
  }

  TensorInfo tensor(const std::string& name, const json& entry) const {
    if (name.empty()) fail("a tensor has an empty name");
    if (!entry.is_object()) fail(name, "entry is a JSON " + std::string(entry.type_name()) + ", expected an object");
    TensorInfo info;
    info.name = name;

    const auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) fail(name, "missing \"dtype\" string");
    const auto dtype = parse_dtype(dtype_it->get_ref<const std::string&>());
    if (!dtype) fail(name, "unknown dtype '" + dtype_it->get<std::string>() + "'");
    info.dtype = *dtype;

    const auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) fail(name, "missing \"shape\" array");
    uint64_t numel = 1;
    for (const json& dim : *shape_it) {
      if (!dim.is_number_unsigned()) fail(name, "shape " + shape_it->dump() + " must hold non-negative integers");
      const uint64_t d = dim.get<uint64_t>();
      // numel() multiplies in int64: every partial product must fit.
      if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, d, &numel) ||
          numel > static_cast<uint64_t>(INT64_MAX)) {
        fail(name, "shape " + shape_it->dump() + " is too large");
      }
      info.shape.push_back(static_cast<int64_t>(d));
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, dtype_size(info.dtype), &nbytes)) {
      fail(name, "shape " + shape_it->dump() + " is too large");
    }

    const auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      fail(name, "\"data_offsets\" must be two non-negative integers");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    const std::string offsets = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) fail(name, offsets + " end before they begin");
    if (end > data_size_) {
      fail(name, offsets + " run past the end of the data (" + std::to_string(data_size_) + " bytes)");
    }
    if (end - begin != nbytes) {
      fail(name, "shape " + shape_string(info.shape) + " of " + std::string(dtype_name(info.dtype)) + " needs " +
                     std::to_string(nbytes) + " bytes but " + offsets + " hold " + std::to_string(end - begin));
    }
    info.file_offset = begin;  // relative to the data section until the caller rebases it
    info.nbytes = nbytes;
    return info;
  }

  std::map<std::string, std::string> metadata(const json& entry) const {
    if (!entry.is_object()) fail("__metadata__ is a JSON " + std::string(entry.type_name()) + ", expected an object");
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : entry.items()) {
      if (!value.is_string()) fail("__metadata__ value of '" + key + "' is a JSON " + value.type_name() + ", expected a string");
      out.emplace(key, value.get<std::string>());
    }
    return out;
  }

 private:
  const std::string& path_;
  uint64_t data_size_;
};

json parse_header(const std::string& path, const char* begin, const char* end) {
  // nlohmann keeps the last of two equal keys; a duplicate tensor name must be an error instead.
  // A header is three levels deep; much deeper nesting would overflow the stack (an ordered_json
  // object that grows copies its values, recursively), so it is refused while parsing.
  constexpr int kMaxDepth = 16;
  std::set<std::string> seen;
  const json::parser_callback_t reject_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxDepth) throw Error(path + ": header nests JSON deeper than " + std::to_string(kMaxDepth) + " levels");
    if (depth == 1 && event == json::parse_event_t::key && !seen.insert(parsed.get<std::string>()).second) {
      throw Error(path + ": tensor '" + parsed.get<std::string>() + "' appears twice in the header");
    }
    return true;
  };
  try {
    return json::parse(begin, end, reject_duplicates);
  } catch (const json::parse_error& e) {
    throw Error(path + ": header is not valid JSON (error at byte " + std::to_string(e.byte) + ")");
  } catch (const json::out_of_range&) {  // a number beyond double's range, such as 1e400
    throw Error(path + ": header is not valid JSON (a number out of range)");
  }
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// The file read-only at an address that is a multiple of 2 MiB, as its offsets
// are in the page cache, so that the kernel can map the cache's huge folios
// whole: each 4 KiB page mapped costs a microsecond or two when first touched
// under the hypervisors here, and a model's weights are read in place.
void* map_aligned_to_huge_pages(int fd, uint64_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  void* reserved = mmap(nullptr, bytes + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) return MAP_FAILED;
  const uintptr_t start = reinterpret_cast<uintptr_t>(reserved);
  const uintptr_t aligned = (start + kHuge - 1) / kHuge * kHuge;
  void* mapped = mmap(reinterpret_cast<void*>(aligned), bytes, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  const int map_errno = errno;
  if (mapped == MAP_FAILED) {
    munmap(reserved, bytes + kHuge);
    errno = map_errno;
    return MAP_FAILED;
  }
  if (aligned > start) munmap(reserved, aligned - start);
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t mapped_end = (aligned + bytes + page - 1) / page * page;
  if (start + bytes + kHuge > mapped_end) munmap(reinterpret_cast<void*>(mapped_end), start + bytes + kHuge - mapped_end);
  madvise(mapped, bytes, MADV_HUGEPAGE);  // advice: without it, pages are mapped one by one
  return mapped;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  file.file_size_ = static_cast<uint64_t>(st.st_size);
  if (file.file_size_ < 8) {
    ::close(fd);
    throw Error(path + ": not a safetensors file (" + std::to_string(file.file_size_) +
                " bytes, too short for the 8-byte header length)");
  }
  void* mapped = map_aligned_to_huge_pages(fd, file.file_size_);
  const int map_errno = errno;
  ::close(fd);
  if (mapped == MAP_FAILED) throw Error(path + ": cannot map: " + std::strerror(map_errno));
  file.base_ = static_cast<const std::byte*>(mapped);

  uint64_t header_len = 0;
  std::memcpy(&header_len, file.base_, 8);  // little-endian, as is every x86-64 host
  if (header_len > kMaxSafetensorsHeaderBytes) {
    throw Error(path + ": not a safetensors file (header length " + std::to_string(header_len) +
                " exceeds the limit of " + std::to_string(kMaxSafetensorsHeaderBytes) + " bytes)");
  }
  if (header_len > file.file_size_ - 8) {
    throw Error(path + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                std::to_string(file.file_size_) + " bytes); is the file truncated?");
  }
  file.header_size_ = 8 + header_len;
  const auto* header = reinterpret_cast<const char*>(file.base_ + 8);
  if (header_len == 0 || header[0] != '{') throw Error(path + ": not a safetensors file (header does not start with '{')");
  const json root = parse_header(path, header, header + header_len);  // an object: it starts with '{'

  const uint64_t data_size = file.file_size_ - file.header_size_;
  const HeaderChecker checker(path, data_size);
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      file.metadata_ = checker.metadata(value);
    } else {
      file.tensors_.push_back(checker.tensor(key, value));
    }
  }

  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : file.tensors_) {
    if (t.nbytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->file_offset < b->file_offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1];
    if (by_offset[i]->file_offset < prev.file_offset + prev.nbytes) {
      throw Error(path + ": tensors '" + prev.name + "' and '" + by_offset[i]->name + "' overlap in the data");
    }
  }
  for (size_t i = 0; i < file.tensors_.size(); ++i) {
    file.tensors_[i].file_offset += file.header_size_;
    file.index_.emplace(file.tensors_[i].name, i);
  }
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    base_ = std::exchange(other.base_, nullptr);
    file_size_ = std::exchange(other.file_size_, 0);
    header_size_ = other.header_size_;
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() {
  if (base_) munmap(const_cast<std::byte*>(base_), file_size_);
  base_ = nullptr;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsFile::at(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (!t) throw Error(path_ + ": no tensor named '" + std::string(name) + "'");
  return *t;
}

std::span<const std::byte> SafetensorsFile::data(const TensorInfo& tensor) const {
  return {base_ + tensor.file_offset, tensor.nbytes};
}

namespace {

// The whole pages within [begin, begin + bytes), for madvise: advice on a page
// shared with a neighbouring tensor would also touch it.
std::pair<uintptr_t, size_t> inner_pages(const std::byte* begin, uint64_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(begin) + bytes) / page * page;
  return {first, end > first ? end - first : 0};
}

}  // namespace

void SafetensorsFile::prefetch(const TensorInfo& tensor) const {
  // Whole pages around the tensor: reading ahead a neighbour's edge is harmless.
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(base_ + tensor.file_offset) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(base_ + tensor.file_offset + tensor.nbytes);
  if (end > first) madvise(reinterpret_cast<void*>(first), end - first, MADV_POPULATE_READ);  // advice: failure is harmless
}

void SafetensorsFile::release(const TensorInfo& tensor) const {
  const auto [first, bytes] = inner_pages(base_ + tensor.file_offset, tensor.nbytes);
  // A private read-only mapping of the file: dropped pages read back unchanged.
  if (bytes) madvise(reinterpret_cast<void*>(first), bytes, MADV_DONTNEED);
}

}  // namespace tiledraw
