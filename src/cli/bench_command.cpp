#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "models/dit.h"
#include "runtime/executor.h"
#include "runtime/text.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct BenchArgs {
  int64_t depth = 28, width = 1152, heads = 16, mlp_ratio = 4, tokens = 256, batch = 2, runs = 3;
  bool profile = false;
};

// Random 8-bit S weights, packed by the backend: stand-ins with the right shapes.
class RandomLayer {
 public:
  RandomLayer(const Accelerator& accel, int64_t n, int64_t k, uint64_t seed)
      : q_(static_cast<size_t>(n * k)), scale_(static_cast<size_t>(n), 1.0f / (127.0f * std::sqrt(float(k)))),
        bias_(static_cast<size_t>(n), 0.0f) {
    uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int8_t& v : q_) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      v = static_cast<int8_t>(static_cast<int>(state % 255) - 127);
    }
    packed_ = accel.pack({q_.data(), scale_.data(), n, k});
  }
  models::LinearWeights view() const { return {.weight = packed_.get(), .bias = bias_.data()}; }

 private:
  std::vector<int8_t> q_;
  std::vector<float> scale_, bias_;
  std::unique_ptr<PackedWeight> packed_;
};

void run_bench_dit(const BenchArgs& a) {
  if (a.width % a.heads != 0) throw Error("--width must be a multiple of --heads");
  std::string why;
  const std::unique_ptr<Accelerator> accel = selected_accelerator(&why);
  std::printf("DiT-shaped stack: depth %lld, width %lld, %lld heads, MLP x%lld, %lld tokens, batch %lld; accel %s (%s)\n",
              static_cast<long long>(a.depth), static_cast<long long>(a.width), static_cast<long long>(a.heads),
              static_cast<long long>(a.mlp_ratio), static_cast<long long>(a.tokens), static_cast<long long>(a.batch),
              std::string(accel->name()).c_str(), accel->kernel().c_str());

  auto start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<RandomLayer>> layers;
  std::vector<models::DitBlockWeights> blocks;
  const int64_t w = a.width, mlp = a.width * a.mlp_ratio;
  for (int64_t b = 0; b < a.depth; ++b) {
    const auto add = [&](int64_t n, int64_t k) {
      layers.push_back(std::make_unique<RandomLayer>(*accel, n, k, static_cast<uint64_t>(layers.size())));
      return layers.back()->view();
    };
    blocks.push_back({add(6 * w, w), add(3 * w, w), add(w, w), add(mlp, w), add(w, mlp)});
  }
  std::printf("weights   %zu layers made and packed in %.2f s\n", layers.size(), seconds_since(start));

  start = std::chrono::steady_clock::now();
  runtime::Graph graph;
  int x = graph.input({a.batch, a.tokens, w});
  const int c = graph.input({a.batch, w});
  for (const models::DitBlockWeights& block : blocks) x = models::dit_block(graph, x, c, block, a.heads);
  graph.output(x);
  const double build_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  const runtime::MemoryPlan plan = runtime::plan_memory(graph);
  const double plan_seconds = seconds_since(start);
  std::printf("graph     %zu nodes built in %.2f ms, planned in %.2f ms\n", graph.nodes().size(), build_seconds * 1e3,
              plan_seconds * 1e3);
  std::printf("arena     %s for all intermediates; %s without reuse (%.1fx less)\n",
              human_bytes(static_cast<uint64_t>(plan.arena_bytes)).c_str(),
              human_bytes(static_cast<uint64_t>(plan.no_reuse_bytes)).c_str(),
              static_cast<double>(plan.no_reuse_bytes) / static_cast<double>(std::max<int64_t>(plan.arena_bytes, 1)));

  ProgramCache cache;
  runtime::Executor exec(graph, *accel, cache);
  std::vector<float> x_in(static_cast<size_t>(a.batch * a.tokens * w)), c_in(static_cast<size_t>(a.batch * w));
  for (size_t i = 0; i < x_in.size(); ++i) x_in[i] = std::sin(0.001f * static_cast<float>(i));
  for (size_t i = 0; i < c_in.size(); ++i) c_in[i] = std::cos(0.01f * static_cast<float>(i));
  std::vector<double> times;
  for (int64_t r = 0; r < a.runs + 1; ++r) {  // the first run prepares programs
    start = std::chrono::steady_clock::now();
    exec.run({x_in.data(), c_in.data()});
    times.push_back(seconds_since(start));
  }
  std::printf("first run %.1f ms (preparing %zu programs)\n", times.front() * 1e3, cache.stats().programs);
  times.erase(times.begin());
  std::sort(times.begin(), times.end());
  std::printf("forward   %.1f ms median of %zu runs (min %.1f, max %.1f)\n", times[times.size() / 2] * 1e3,
              times.size(), times.front() * 1e3, times.back() * 1e3);
  if (a.profile) {
    std::printf("\n");
    exec.profile().print(stdout, *accel, cache.stats(), plan.arena_bytes);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks on random weights");
  bench->require_subcommand(1);
  auto args = std::make_shared<BenchArgs>();
  CLI::App* dit = bench->add_subcommand("dit", "A DiT-shaped transformer forward pass (default: DiT-XL/2 at 256 x 256)");
  dit->add_option("--depth", args->depth, "Blocks")->capture_default_str()->check(CLI::Range(1, 1000));
  dit->add_option("--width", args->width, "Hidden size")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  dit->add_option("--heads", args->heads, "Attention heads")->capture_default_str()->check(CLI::Range(1, 1024));
  dit->add_option("--mlp-ratio", args->mlp_ratio, "MLP width / hidden size")->capture_default_str()->check(CLI::Range(1, 16));
  dit->add_option("--tokens", args->tokens, "Tokens per image")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  dit->add_option("--batch", args->batch, "Batch (2 with guidance)")->capture_default_str()->check(CLI::Range(1, 1024));
  dit->add_option("--runs", args->runs, "Timed runs")->capture_default_str()->check(CLI::Range(1, 1000));
  dit->add_flag("--profile", args->profile, "Print time by op, the program cache and the arena");
  dit->callback([args] { run_bench_dit(*args); });
}

}  // namespace tiledraw::cli
