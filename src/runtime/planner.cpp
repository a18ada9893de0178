#include "runtime/planner.h"

#include <algorithm>

namespace tiledraw::runtime {
namespace {

int64_t aligned(int64_t bytes) { return (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign; }

struct Interval {
  int64_t begin, end;
};

}  // namespace

MemoryPlan plan_memory(const Graph& graph, bool reuse) {
  const std::vector<Value>& values = graph.values();
  const int count = static_cast<int>(values.size());
  const int end_of_graph = static_cast<int>(graph.nodes().size());
  std::vector<int> first(static_cast<size_t>(count)), last(static_cast<size_t>(count));
  for (int v = 0; v < count; ++v) first[v] = last[v] = values[v].producer;
  for (int n = 0; n < end_of_graph; ++n) {
    for (int in : graph.nodes()[n].inputs) {
      const int r = graph.root(in);
      last[r] = std::max(last[r], n);
    }
  }
  for (int v : graph.outputs()) last[graph.root(v)] = end_of_graph;

  MemoryPlan plan;
  plan.offset.assign(static_cast<size_t>(count), -1);
  plan.in_place_of.assign(static_cast<size_t>(count), -1);
  // owner[v]: the value whose allocation v lives in (itself, or the residual chain's first value).
  std::vector<int> owner(static_cast<size_t>(count));
  for (int v = 0; v < count; ++v) owner[v] = v;
  if (reuse) {
    for (int n = 0; n < end_of_graph; ++n) {
      const Node& node = graph.nodes()[n];
      if (node.kind != OpKind::Linear || node.inputs.size() != 2) continue;
      const int residual = node.inputs[1];
      const bool dies_here = graph.root(residual) == residual && values[residual].producer >= 0 && last[residual] == n;
      if (!dies_here) continue;
      plan.in_place_of[node.output] = residual;
      owner[node.output] = owner[residual];
      last[owner[residual]] = std::max(last[owner[residual]], last[node.output]);
    }
  }

  std::vector<int> order;  // the values that need arena memory of their own
  for (int v = 0; v < count; ++v) {
    if (values[v].producer < 0 || values[v].view_of >= 0) continue;
    plan.no_reuse_bytes += aligned(values[v].bytes());
    if (owner[v] == v) order.push_back(v);
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return values[a].bytes() > values[b].bytes(); });

  std::vector<int> placed;
  std::vector<Interval> taken;
  for (int v : order) {
    const int64_t size = aligned(values[v].bytes());
    int64_t offset = 0;
    if (reuse) {
      taken.clear();
      for (int p : placed) {
        if (first[p] <= last[v] && first[v] <= last[p]) taken.push_back({plan.offset[p], plan.offset[p] + aligned(values[p].bytes())});
      }
      std::sort(taken.begin(), taken.end(), [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
      for (const Interval& t : taken) {
        if (offset + size <= t.begin) break;
        offset = std::max(offset, t.end);
      }
    } else {
      offset = plan.arena_bytes;
    }
    plan.offset[v] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
    placed.push_back(v);
  }
  for (int v = 0; v < count; ++v) {
    if (owner[v] != v) plan.offset[v] = plan.offset[owner[v]];
  }
  for (int v = 0; v < count; ++v) {
    if (values[v].view_of >= 0) plan.offset[v] = plan.offset[graph.root(v)];
  }
  return plan;
}

}  // namespace tiledraw::runtime
