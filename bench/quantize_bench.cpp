// Row quantization to 8-bit S, per kernel: the converter's inner loop, and the
// shape of activation quantization before an int8 matmul (tokens x hidden).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/quantize/quantize_rows.h"
#include "tiledraw/cpu.h"

namespace {

using tiledraw::IsaLevel;

void BM_QuantizeRows(benchmark::State& state, IsaLevel level) {
  if (level > tiledraw::isa_level()) {
    state.SkipWithError("this CPU lacks the ISA");
    return;
  }
  const auto rows = static_cast<size_t>(state.range(0));
  const auto cols = static_cast<size_t>(state.range(1));
  std::vector<float> x(rows * cols);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (float& v : x) v = dist(rng);
  std::vector<int8_t> q(x.size());
  std::vector<float> scales(rows);
  const auto kernel = tiledraw::kernels::quantize_rows_kernel(level);
  for (auto _ : state) {
    kernel(x.data(), rows, cols, q.data(), scales.data());
    benchmark::DoNotOptimize(q.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * x.size() * sizeof(float)));
}

// DiT-XL/2 at 256x256: 256 tokens of width 1152 (and the MLP's 4608).
#define QUANTIZE_SHAPES Args({256, 1152})->Args({256, 4608})->MinTime(0.5)
BENCHMARK_CAPTURE(BM_QuantizeRows, scalar, IsaLevel::Scalar)->QUANTIZE_SHAPES;
BENCHMARK_CAPTURE(BM_QuantizeRows, avx2, IsaLevel::Avx2)->QUANTIZE_SHAPES;
BENCHMARK_CAPTURE(BM_QuantizeRows, avx512, IsaLevel::Avx512)->QUANTIZE_SHAPES;

}  // namespace
