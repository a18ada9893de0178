// What LoRA adapters cost beside a model's layers, in one process so that
// load, page faults and the machine's drift fall on both sides alike:
//
//   tiledraw_lora_bench MODEL ADAPTER [--size 512] [--context 768] [--pairs 5] [--runs 3]
//
// - the UNet's guided step (batch 2, 77 text tokens) at --size, with and
//   without ADAPTER, interleaved pair by pair (`Pipeline::forward`'s median
//   of --runs evaluations each time), and the ratio per pair;
// - switching: a `forward` of the UNet at 8 x 8 latents with the adapter at
//   strengths not used before (the file held, as a server holds it: its
//   layers' branches built anew, the graph with them) less one without it;
// - reading and matching the file the first time (`check_loras` on a fresh
//   pipeline).
// Each is the median of --pairs.
//
// bench/lora.py writes a rank-32 adapter on SD 1.5's attention and
// feed-forward layers and runs this.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tiledraw/pipeline.h"

namespace {

using tiledraw::FloatTensor;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

FloatTensor normal(std::vector<int64_t> shape, std::mt19937& rng) {
  FloatTensor t{shape, {}};
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  std::normal_distribution<float> dist;
  for (int64_t i = 0; i < count; ++i) t.data.push_back(dist(rng));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL ADAPTER [--size 512] [--context 768] [--pairs 5] [--runs 3]\n", argv[0]);
    return 2;
  }
  const std::string model_path = argv[1], adapter = argv[2];
  int64_t size = 512, context = 768, pairs = 5, runs = 3;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int64_t value = std::atoll(argv[i + 1]);
    if (flag == "--size") size = value;
    else if (flag == "--context") context = value;
    else if (flag == "--pairs") pairs = std::max<int64_t>(1, value);
    else if (flag == "--runs") runs = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  try {
    const auto pipeline = tiledraw::Pipeline::load(model_path);
    std::mt19937 rng(2);
    const std::map<std::string, FloatTensor> inputs = {
        {"sample", normal({2, 4, size / 8, size / 8}, rng)},
        {"timestep", {{2}, {999.0f, 999.0f}}},
        {"encoder_hidden_states", normal({2, 77, context}, rng)}};

    const std::map<std::string, FloatTensor> small = {
        {"sample", normal({2, 4, 8, 8}, rng)}, {"timestep", {{2}, {999.0f, 999.0f}}},
        {"encoder_hidden_states", normal({2, 77, context}, rng)}};
    const auto wall_of = [&](auto&& run) {
      const auto start = std::chrono::steady_clock::now();
      run();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    // Programs and auto's choices for every shape, made once, untimed.
    tiledraw::Pipeline::ForwardTiming timing;
    pipeline->forward("unet", small, 0, nullptr, {{adapter, 1.0, 1.0}});
    pipeline->forward("unet", inputs, 1, &timing, {{adapter, 1.0, 1.0}});
    std::vector<double> reads, switches;
    for (int64_t i = 0; i < pairs; ++i) {
      const auto fresh = tiledraw::Pipeline::load(model_path);  // its adapter files not read yet
      reads.push_back(wall_of([&] { fresh->check_loras({{adapter, 1.0, 1.0}}); }));
      const double strength = 0.5 + 0.01 * static_cast<double>(i);  // a set not built before
      const double without = wall_of([&] { pipeline->forward("unet", small); });
      const double with = wall_of([&] { pipeline->forward("unet", small, 0, nullptr, {{adapter, strength, strength}}); });
      switches.push_back(with - without);
    }

    std::vector<double> plain, adapted, ratios;
    for (int64_t i = 0; i < pairs; ++i) {
      pipeline->forward("unet", inputs, static_cast<int>(runs), &timing);
      plain.push_back(timing.median_seconds);
      pipeline->forward("unet", inputs, static_cast<int>(runs), &timing, {{adapter, 1.0, 1.0}});
      adapted.push_back(timing.median_seconds);
      ratios.push_back(adapted.back() / plain.back());
    }
    std::printf("UNet step at %lld x %lld: without %.3f s, with %.3f s (medians of %lld pairs)\n",
                static_cast<long long>(size), static_cast<long long>(size), median(plain), median(adapted),
                static_cast<long long>(pairs));
    std::printf("ratio per pair:");
    for (double r : ratios) std::printf(" %.3f", r);
    std::printf("; median %.3f\n", median(ratios));
    std::printf("switching to new strengths (file held): median %.1f ms; reading and matching the file the first time: "
                "median %.1f ms\n", 1000 * median(switches), 1000 * median(reads));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tiledraw_lora_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
