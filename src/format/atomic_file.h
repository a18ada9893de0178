#pragma once

#include <cstddef>
#include <string>

namespace tiledraw {

// A file written under a temporary name in the destination folder and renamed
// over `path` only by commit(), after fsync: a failure, an exception or an
// interrupt never leaves a partial file under the final name. Until commit,
// SIGINT and SIGTERM remove the temporary file (see
// remove_partial_files_on_interrupt in safetensors.h).
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write_all(const void* data, size_t size);
  void commit();

 private:
  void release_slot();

  std::string final_path_;
  std::string path_;
  int fd_ = -1;
  int slot_ = -1;
  bool committed_ = false;
};

}  // namespace tiledraw
