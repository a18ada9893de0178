// Attention at DiT-XL/2's shape (16 heads of 72, batch 2 for guidance), f32 and bf16 products,
// against its ceiling: 4 tokens^2 head_dim FLOPs per head.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <random>
#include <vector>

#include "kernels/attention/attention.h"

namespace {

void BM_AttentionFlash(benchmark::State& state, tiledraw::IsaLevel level, tiledraw::kernels::AttentionMath math) {
  if (tiledraw::isa_level() < level) return state.SkipWithError("this CPU lacks the ISA");
  if (math == tiledraw::kernels::AttentionMath::Bf16Products && !tiledraw::cpu_features().avx512_bf16) {
    return state.SkipWithError("this CPU lacks AVX512-BF16");
  }
  const tiledraw::kernels::AttentionFn attention = tiledraw::kernels::attention_kernel(level, math);
  const int64_t tokens = state.range(0), batch = 2, heads = 16, dim = 72;
  omp_set_num_threads(static_cast<int>(state.range(1)));
  std::vector<float> qkv(static_cast<size_t>(batch * tokens * 3 * heads * dim));
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (float& v : qkv) v = dist(rng);
  std::vector<float> out(static_cast<size_t>(batch * tokens * heads * dim));
  for (auto _ : state) {
    attention({qkv.data(), out.data(), batch, tokens, heads, dim});
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * batch * heads * double(tokens) * double(tokens) * dim,
                                                benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

#define ATTENTION_SHAPES \
  ArgsProduct({{256, 1024}, {1, 2}})->ArgNames({"tokens", "threads"})->MinTime(0.5)->UseRealTime()->Unit(benchmark::kMillisecond)
BENCHMARK_CAPTURE(BM_AttentionFlash, bf16_avx512bf16, tiledraw::IsaLevel::Avx512, tiledraw::kernels::AttentionMath::Bf16Products)
    ->ATTENTION_SHAPES;
BENCHMARK_CAPTURE(BM_AttentionFlash, f32_avx512, tiledraw::IsaLevel::Avx512, tiledraw::kernels::AttentionMath::F32)->ATTENTION_SHAPES;
BENCHMARK_CAPTURE(BM_AttentionFlash, f32_avx2, tiledraw::IsaLevel::Avx2, tiledraw::kernels::AttentionMath::F32)->ATTENTION_SHAPES;

}  // namespace
