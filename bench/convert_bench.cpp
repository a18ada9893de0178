// `convert` throughput on one DiT-XL/2 block in F16 (24M parameters, 48 MB):
// the whole model is 28 such blocks plus small tensors.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <vector>

#include "tiledraw/convert.h"
#include "tiledraw/safetensors.h"

namespace {

void BM_ConvertDitXlBlockF16(benchmark::State& state) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("tiledraw-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string in = (dir / "block-f16.safetensors").string();
  const std::string out = (dir / "block-8bit-s.safetensors").string();
  const int64_t h = 1152;
  std::vector<tiledraw::TensorSource> tensors;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (const auto& [name, rows, cols] : std::vector<std::tuple<std::string, int64_t, int64_t>>{
           {"attn.qkv", 3 * h, h}, {"attn.proj", h, h}, {"mlp.fc1", 4 * h, h}, {"mlp.fc2", h, 4 * h},
           {"adaLN_modulation.1", 6 * h, h}}) {
    tensors.push_back({"blocks.0." + name + ".weight", tiledraw::DType::F16, {rows, cols}, [&](std::span<std::byte> b) {
                         auto* p = reinterpret_cast<uint16_t*>(b.data());
                         for (size_t i = 0; i < b.size() / 2; ++i) p[i] = tiledraw::float_to_half(dist(rng));
                       }});
  }
  tiledraw::write_safetensors(in, std::move(tensors), {});
  for (auto _ : state) tiledraw::convert_to_8bit_s(in, out, {});
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * std::filesystem::file_size(in)));
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_ConvertDitXlBlockF16)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

}  // namespace
