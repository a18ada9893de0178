// Attention at the shapes the models run, f32 and bf16 products, counted as
// 4 q_tokens kv_tokens head_dim FLOPs per head:
// - DiT-XL/2 self-attention (16 heads of 72, batch 2 for guidance, 256 and 1024 tokens);
// - SD 1.5's first-level cross-attention (4096 queries x 77 text tokens, 8 heads of 40, batch 2),
//   keys and values as column slices of one stacked projection;
// - the SD VAE's mid-block attention (one head of 512 over 4096 pixels, batch 1).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <random>
#include <vector>

#include "kernels/attention/attention.h"

namespace {

struct Shape {
  int64_t batch, q_tokens, kv_tokens, heads, head_dim;
  bool packed_qkv;  // self-attention over one [tokens, 3, heads, head_dim] projection; else q and a stacked k/v
};

void run_attention(benchmark::State& state, tiledraw::IsaLevel level, tiledraw::kernels::AttentionMath math,
                   const Shape& s) {
  if (tiledraw::isa_level() < level) return state.SkipWithError("this CPU lacks the ISA");
  if (math == tiledraw::kernels::AttentionMath::Bf16Products && !tiledraw::cpu_features().avx512_bf16) {
    return state.SkipWithError("this CPU lacks AVX512-BF16");
  }
  const tiledraw::kernels::AttentionFn attention = tiledraw::kernels::attention_kernel(level, math);
  omp_set_num_threads(static_cast<int>(state.range(1)));
  const int64_t width = s.heads * s.head_dim;
  const int64_t kv_stride = s.packed_qkv ? 3 * width : 2 * width;
  std::vector<float> q(static_cast<size_t>(s.batch * s.q_tokens * (s.packed_qkv ? 3 : 1) * width));
  std::vector<float> kv(s.packed_qkv ? 0 : static_cast<size_t>(s.batch * s.kv_tokens * kv_stride));
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (float& v : q) v = dist(rng);
  for (float& v : kv) v = dist(rng);
  const float* k = s.packed_qkv ? q.data() + width : kv.data();
  std::vector<float> out(static_cast<size_t>(s.batch * s.q_tokens * width));
  const tiledraw::kernels::AttentionArgs args{.q = q.data(), .k = k, .v = k + width, .out = out.data(),
                                              .q_stride = s.packed_qkv ? 3 * width : width, .k_stride = kv_stride,
                                              .v_stride = kv_stride, .out_stride = width, .batch = s.batch,
                                              .q_tokens = s.q_tokens, .kv_tokens = s.kv_tokens, .heads = s.heads,
                                              .head_dim = s.head_dim};
  for (auto _ : state) {
    attention(args);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(tiledraw::kernels::attention_flops(args),
                                                benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_AttentionFlash(benchmark::State& state, tiledraw::IsaLevel level, tiledraw::kernels::AttentionMath math) {
  run_attention(state, level, math, {2, state.range(0), state.range(0), 16, 72, true});
}

void BM_AttentionCross(benchmark::State& state, tiledraw::IsaLevel level, tiledraw::kernels::AttentionMath math) {
  run_attention(state, level, math, {2, state.range(0), 77, 8, 40, false});
}

void BM_AttentionVae(benchmark::State& state, tiledraw::IsaLevel level, tiledraw::kernels::AttentionMath math) {
  run_attention(state, level, math, {1, state.range(0), state.range(0), 1, 512, true});
}

#define ATTENTION_OPTIONS ->MinTime(0.5)->UseRealTime()->Unit(benchmark::kMillisecond)
#define DIT_SHAPES ArgsProduct({{256, 1024}, {1, 2}})->ArgNames({"tokens", "threads"}) ATTENTION_OPTIONS
#define CROSS_SHAPES ArgsProduct({{4096}, {1, 2}})->ArgNames({"queries", "threads"}) ATTENTION_OPTIONS
#define VAE_SHAPES ArgsProduct({{4096}, {1, 2}})->ArgNames({"tokens", "threads"}) ATTENTION_OPTIONS
#define ATTENTION_KERNELS(name, shapes)                                                                        \
  BENCHMARK_CAPTURE(name, bf16_avx512bf16, tiledraw::IsaLevel::Avx512,                                         \
                    tiledraw::kernels::AttentionMath::Bf16Products)->shapes;                                   \
  BENCHMARK_CAPTURE(name, f32_avx512, tiledraw::IsaLevel::Avx512, tiledraw::kernels::AttentionMath::F32)->shapes; \
  BENCHMARK_CAPTURE(name, f32_avx2, tiledraw::IsaLevel::Avx2, tiledraw::kernels::AttentionMath::F32)->shapes;
ATTENTION_KERNELS(BM_AttentionFlash, DIT_SHAPES)
ATTENTION_KERNELS(BM_AttentionCross, CROSS_SHAPES)
ATTENTION_KERNELS(BM_AttentionVae, VAE_SHAPES)

}  // namespace
