#include "format/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <utility>

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

}  // namespace

AtomicFile::AtomicFile(const std::string& final_path) : final_path_(final_path) {
  const size_t slash = final_path.rfind('/');
  const std::string base = slash == std::string::npos ? final_path : final_path.substr(slash + 1);
  struct stat st {};
  if (base.empty() || (stat(final_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
    throw Error(final_path + ": is a folder; name the file to write");
  }
  path_ = (slash == std::string::npos ? "" : final_path.substr(0, slash + 1)) + "." + base + ".tmp-XXXXXX";
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

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) unlink(path_.c_str());
  release_slot();
}

void AtomicFile::write_all(const void* data, size_t size) {
  const auto* bytes = static_cast<const std::byte*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, bytes, std::min<size_t>(size, 1u << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(final_path_ + ": cannot write: " + std::strerror(errno));
    bytes += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (fsync(fd_) != 0) throw Error(final_path_ + ": cannot write: " + std::strerror(errno));
  // Synced pages leave the page cache, so that the next reader brings them back
  // through readahead, in the 2 MiB folios a model's loader maps whole: the
  // folios writing leaves are mostly 4 KiB ones, which left SD 1.5's weights
  // half mapped by 4 KiB pages and its steps up to 13% slower right after
  // `convert`. Reading them back cost 0.2-0.3 s once.
  posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);  // advice: a failure changes nothing
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) throw Error(final_path_ + ": cannot write: " + std::strerror(errno));
  if (rename(path_.c_str(), final_path_.c_str()) != 0) {
    throw Error(final_path_ + ": cannot move the finished file into place: " + std::strerror(errno));
  }
  committed_ = true;
  release_slot();
}

void AtomicFile::release_slot() {
  if (slot_ < 0) return;
  g_slot_ready[static_cast<size_t>(slot_)].store(false);
  g_slot_used[static_cast<size_t>(slot_)].store(false);
  slot_ = -1;
}

void remove_partial_files_on_interrupt() {
  struct sigaction action {};
  action.sa_handler = remove_partial_files_and_die;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace tiledraw
