// Attention at DiT-XL/2's shape (16 heads of 72, batch 2 for guidance), fp32,
// against its ceiling: 4 tokens^2 head_dim FLOPs per head.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <random>
#include <vector>

#include "kernels/attention/attention.h"

namespace {

void BM_AttentionFlash(benchmark::State& state) {
  if (tiledraw::isa_level() < tiledraw::IsaLevel::Avx512) return state.SkipWithError("no AVX-512");
  const int64_t tokens = state.range(0), batch = 2, heads = 16, dim = 72;
  omp_set_num_threads(static_cast<int>(state.range(1)));
  std::vector<float> qkv(static_cast<size_t>(batch * tokens * 3 * heads * dim));
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (float& v : qkv) v = dist(rng);
  std::vector<float> out(static_cast<size_t>(batch * tokens * heads * dim));
  for (auto _ : state) {
    tiledraw::kernels::f32_attention_flash_8x64__avx512({qkv.data(), out.data(), batch, tokens, heads, dim});
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * batch * heads * double(tokens) * double(tokens) * dim,
                                                benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

BENCHMARK(BM_AttentionFlash)->ArgsProduct({{256, 1024}, {1, 2}})->ArgNames({"tokens", "threads"})->MinTime(0.5)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
