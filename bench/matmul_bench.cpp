// The 8-bit S linear layer on every backend, on the diffusion-transformer shapes
// of DiT-XL/2 (width 1152, MLP 4608; 256, 1024 and 4096 tokens), with 1 and 2
// threads, next to oneDNN's own bf16 and fp32 matmul on the same shapes; and
// on the SD 1.5 UNet's shapes, ours against oneDNN's.
// Activation quantization is inside the timed region. bench/matmul_table.py runs
// this with repetitions in random interleaving and prints GOP/s and ratios.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <array>
#include <random>
#include <string>
#include <vector>

#include "tiledraw/accel.h"
#include "tiledraw/quant8s.h"

namespace {

using namespace tiledraw;

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void set_ops_counter(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  state.counters["OP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k),
                                              benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_Linear8BitS(benchmark::State& state, const std::string& backend) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  omp_set_num_threads(static_cast<int>(state.range(3)));
  std::string why;
  const std::unique_ptr<Accelerator> accel = make_accelerator(backend, &why);
  if (!accel) {
    state.SkipWithError(("cannot run here: " + why).c_str());
    return;
  }
  const std::vector<float> x = random_floats(static_cast<size_t>(m * k), 1);
  const std::vector<float> w = random_floats(static_cast<size_t>(n * k), 2);
  std::vector<int8_t> q(w.size());
  std::vector<float> scale(static_cast<size_t>(n));
  quantize_rows_8bit_s(w.data(), static_cast<size_t>(n), static_cast<size_t>(k), q.data(), scale.data());
  const std::unique_ptr<PackedWeight> packed = accel->pack({q.data(), scale.data(), n, k});
  const std::vector<float> bias = random_floats(static_cast<size_t>(n), 3);
  std::vector<float> y(static_cast<size_t>(m * n));
  ProgramCache cache;
  QuantizedActivation scratch;
  for (auto _ : state) {
    linear_8bit_s(*accel, cache, x.data(), m, k, *packed, bias.data(), {true, Activation::None, false}, y.data(), n,
                  scratch);
    benchmark::DoNotOptimize(y.data());
  }
  set_ops_counter(state, m, n, k);
  state.SetLabel(accel->kernel());
}

// oneDNN's float matmul, from float activations: fp32 as is, bf16 with the
// activations converted inside the timed region (a reorder), weights converted once.
void BM_OnednnFloat(benchmark::State& state, dnnl::memory::data_type type) {
  using dnnl::memory;
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  omp_set_num_threads(static_cast<int>(state.range(3)));
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  std::vector<float> x = random_floats(static_cast<size_t>(m * k), 1);
  std::vector<float> w = random_floats(static_cast<size_t>(k * n), 2);
  std::vector<float> bias = random_floats(static_cast<size_t>(n), 3);
  memory x_f32({{m, k}, memory::data_type::f32, memory::format_tag::ab}, engine, x.data());
  memory w_f32({{k, n}, memory::data_type::f32, memory::format_tag::ab}, engine, w.data());
  memory bias_f32({{1, n}, memory::data_type::f32, memory::format_tag::ab}, engine, bias.data());
  dnnl::matmul::primitive_desc pd(
      dnnl::matmul::desc(memory::desc({m, k}, type, memory::format_tag::ab), memory::desc({k, n}, type, memory::format_tag::any),
                         bias_f32.get_desc(), memory::desc({m, n}, memory::data_type::f32, memory::format_tag::ab)),
      engine);
  memory src = type == memory::data_type::f32 ? x_f32 : memory(pd.src_desc(), engine);
  memory weights(pd.weights_desc(), engine);
  dnnl::reorder(w_f32, weights).execute(stream, w_f32, weights);
  memory dst(pd.dst_desc(), engine);
  const dnnl::matmul matmul(pd);
  const bool convert = type != memory::data_type::f32;
  const dnnl::reorder to_src = convert ? dnnl::reorder(x_f32, src) : dnnl::reorder();
  for (auto _ : state) {
    if (convert) to_src.execute(stream, x_f32, src);
    matmul.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, bias_f32}, {DNNL_ARG_DST, dst}});
    stream.wait();
  }
  set_ops_counter(state, m, n, k);
  state.SetLabel(std::string("oneDNN ") + pd.impl_info_str());
}

// Finding a prepared program: the per-call overhead the runtime adds.
void BM_ProgramCacheHit(benchmark::State& state) {
  const std::unique_ptr<Accelerator> accel = make_accelerator("auto");
  ProgramCache cache;
  cache.get(*accel, {256, 1152, 1152, {true, Activation::None, false}});
  for (auto _ : state) benchmark::DoNotOptimize(&cache.get(*accel, {250, 1152, 1152, {true, Activation::None, false}}));
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::pair<int64_t, int64_t>> kn = {{1152, 1152}, {1152, 3456}, {1152, 4608}, {4608, 1152}};
  for (const int64_t m : {256, 1024, 4096}) {
    for (const auto& [k, n] : kn) {
      for (const int64_t threads : {1, 2}) {
        const auto shape = [&](benchmark::internal::Benchmark* b) {
          b->Args({m, k, n, threads})->ArgNames({"M", "K", "N", "threads"})->MinTime(0.2)->UseRealTime();
        };
        for (const char* backend : {"amx", "vnni", "onednn", "auto"}) {
          shape(benchmark::RegisterBenchmark((std::string("s8/") + backend).c_str(), BM_Linear8BitS, std::string(backend)));
        }
        shape(benchmark::RegisterBenchmark("bf16/onednn", BM_OnednnFloat, dnnl::memory::data_type::bf16));
        shape(benchmark::RegisterBenchmark("f32/onednn", BM_OnednnFloat, dnnl::memory::data_type::f32));
      }
    }
  }
  // The SD 1.5 UNet's matmuls in a guided step at 512 x 512 (batch 2), as the
  // executor runs them: linear layers on every token of a level (K, N), and
  // convolutions in chunks of im2col rows near 4 MiB (M = 4 MiB / K).
  const std::vector<std::array<int64_t, 3>> unet = {
      {8192, 320, 960},   {8192, 320, 2560},  {8192, 1280, 320},  {2048, 640, 1920},  {2048, 2560, 640},
      {512, 1280, 3840},  {512, 5120, 1280},  {1456, 2880, 320},  {728, 5760, 640},   {364, 11520, 1280},
  };
  for (const auto& [m, k, n] : unet) {
    for (const char* backend : {"vnni", "onednn"}) {
      benchmark::RegisterBenchmark((std::string("sd15_unet/") + backend).c_str(), BM_Linear8BitS, std::string(backend))
          ->Args({m, k, n, 2})
          ->ArgNames({"M", "K", "N", "threads"})
          ->MinTime(0.2)
          ->UseRealTime();
    }
  }
  benchmark::RegisterBenchmark("program_cache_hit", BM_ProgramCacheHit);
  // Next to no arithmetic (16 x 64 x 64): the per-call cost of quantizing,
  // finding the program, the thread fork and the epilogue.
  for (const char* backend : {"vnni", "onednn", "auto"}) {
    benchmark::RegisterBenchmark((std::string("overhead/") + backend).c_str(), BM_Linear8BitS, std::string(backend))
        ->Args({16, 64, 64, 2})
        ->ArgNames({"M", "K", "N", "threads"})
        ->MinTime(0.2)
        ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
