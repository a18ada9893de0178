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
// its root's offset.
struct MemoryPlan {
  std::vector<int64_t> offset;  // bytes, per value
  int64_t arena_bytes = 0;
  int64_t no_reuse_bytes = 0;  // every intermediate in memory of its own
};

inline constexpr int64_t kArenaAlign = 64;

// reuse = false gives every intermediate its own bytes: the reference the
// reusing plan is tested against.
MemoryPlan plan_memory(const Graph& graph, bool reuse = true);

}  // namespace tiledraw::runtime
