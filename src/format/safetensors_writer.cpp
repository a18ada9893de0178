#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {
namespace {

// Temporary files of writes in progress, readable from a signal handler: fixed
// storage, lock-free slots, and only async-signal-safe calls in the handler.
constexpr size_t kPartialSlots = 16;
constexpr size_t kMaxTempPath = 4096;
std::array<std::atomic<bool>, kPartialSlots> g_slot_used{};
std::array<std::atomic<bool>, kPartialSlots> g_slot_ready{};
std::array<std::array<char, kMaxTempPath>, kPartialSlots> g_slot_path{};

void remove_partial_files_and_die(int sig) {
  for (size_t i = 0; i < kPartialSlots; ++i) {
    if (g_slot_ready[i].load()) unlink(g_slot_path[i].data());
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

// Owns a temporary file: unlinks it unless committed by renaming it into place.
class TempFile {
 public:
  explicit TempFile(const std::string& final_path) : final_path_(final_path) {
    const size_t slash = final_path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : final_path.substr(0, slash + 1);
    const std::string base = slash == std::string::npos ? final_path : final_path.substr(slash + 1);
    struct stat st {};
    if (base.empty() || (stat(final_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
      throw Error(final_path + ": is a folder; name the file to write");
    }
    path_ = (slash == std::string::npos ? "" : dir) + "." + base + ".tmp-XXXXXX";
    fd_ = mkstemp(path_.data());
    if (fd_ < 0) throw Error(final_path + ": cannot create a file there: " + std::strerror(errno));
    fchmod(fd_, 0644);
    if (path_.size() < kMaxTempPath) {
      for (size_t i = 0; i < kPartialSlots; ++i) {
        if (!g_slot_used[i].exchange(true)) {
          std::memcpy(g_slot_path[i].data(), path_.c_str(), path_.size() + 1);
          g_slot_ready[i].store(true);
          slot_ = static_cast<int>(i);
          break;
        }
      }
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) unlink(path_.c_str());
    release_slot();
  }

  void write_all(const std::byte* data, size_t size) {
    while (size > 0) {
      const ssize_t n = ::write(fd_, data, std::min<size_t>(size, 1u << 30));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw Error(final_path_ + ": cannot write: " + std::strerror(errno));
      data += n;
      size -= static_cast<size_t>(n);
    }
  }

  void commit() {
    if (fsync(fd_) != 0) throw Error(final_path_ + ": cannot write: " + std::strerror(errno));
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) throw Error(final_path_ + ": cannot write: " + std::strerror(errno));
    if (rename(path_.c_str(), final_path_.c_str()) != 0) {
      throw Error(final_path_ + ": cannot move the finished file into place: " + std::strerror(errno));
    }
    committed_ = true;
    release_slot();
  }

 private:
  void release_slot() {
    if (slot_ < 0) return;
    g_slot_ready[slot_].store(false);
    g_slot_used[slot_].store(false);
    slot_ = -1;
  }

  std::string final_path_;
  std::string path_;
  int fd_ = -1;
  int slot_ = -1;
  bool committed_ = false;
};

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
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorSource& a, const TensorSource& b) {
    const size_t sa = dtype_size(a.dtype), sb = dtype_size(b.dtype);
    return sa != sb ? sa > sb : a.name < b.name;
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
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  const uint64_t header_len = header_text.size();

  TempFile out(path);
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

void remove_partial_files_on_interrupt() {
  struct sigaction action {};
  action.sa_handler = remove_partial_files_and_die;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace tiledraw
