#pragma once

#include <chrono>

namespace tiledraw {

// Seconds from `start` to now, on the monotonic clock every timing here uses.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace tiledraw
