#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "runtime/stopwatch.h"

namespace tiledraw::cli {

// A progress bar on stderr: redrawn in place on a terminal, a plain line per
// tenth of the work otherwise (logs, CI), nothing when quiet.
class Progress {
 public:
  Progress(std::string label, std::string unit, bool quiet);
  void update(size_t done, size_t total, std::string_view item = {});
  void finish();

 private:
  std::string label_;
  std::string unit_;
  bool quiet_;
  bool terminal_;
  size_t last_tenth_ = 0;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace tiledraw::cli
