#pragma once

#include <cstdint>
#include <vector>

#include "runtime/graph.h"

namespace tiledraw::runtime {

// Where each value lives in one arena. A value is alive from the node that
// makes it to the last node that reads it or a view of it (outputs: to the
// end); values alive at the same time never share bytes. Placement is greedy
// by size, largest first, each at the lowest offset that fits among the values
// it overlaps in time. Inputs are the caller's memory (offset -1); a view takes
// its root's offset. The output of a linear with a residual takes the
// residual's bytes when that linear is the residual's last reader.
struct MemoryPlan {
  std::vector<int64_t> offset;  // bytes, per value
  // Per value: the residual whose bytes it took over (a linear with a residual
  // whose last reader it is), or -1. The executor then adds in place.
  std::vector<int> in_place_of;
  int64_t arena_bytes = 0;
  int64_t no_reuse_bytes = 0;  // every intermediate in memory of its own
};

inline constexpr int64_t kArenaAlign = 64;

// reuse = false gives every intermediate its own bytes: the reference the
// reusing plan is tested against.
MemoryPlan plan_memory(const Graph& graph, bool reuse = true);

}  // namespace tiledraw::runtime
