// The machine's ceilings for one core: 24 independent VPDPBUSD (int8) or
// VFMADD231PS (fp32) on ZMM registers, no memory. Kernels are judged against
// these. Compiled with AVX-512 flags; skipped on CPUs without AVX512-VNNI.
#include <benchmark/benchmark.h>

#include "tiledraw/cpu.h"

namespace {

#define TD_24(op)                                                                                             \
  op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11) op(12) op(13) op(14) op(15) op(16) \
      op(17) op(18) op(19) op(20) op(21) op(22) op(23)
#define TD_CLOBBER                                                                                                \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
      "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23"
#define TD_DPBUSD(r) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define TD_FMA(r) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #r "\n\t"

void BM_PeakInt8Avx512Vnni(benchmark::State& state) {
  if (!tiledraw::cpu_features().avx512_vnni) return state.SkipWithError("no AVX512-VNNI");
  for (auto _ : state) {
    for (int i = 0; i < 1000; ++i) __asm__ volatile(TD_24(TD_DPBUSD)::: TD_CLOBBER);
  }
  state.counters["OP/s"] = benchmark::Counter(1000.0 * 24 * 64 * 2, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

void BM_PeakFp32Avx512Fma(benchmark::State& state) {
  if (!tiledraw::cpu_features().avx512) return state.SkipWithError("no AVX-512");
  for (auto _ : state) {
    for (int i = 0; i < 1000; ++i) __asm__ volatile(TD_24(TD_FMA)::: TD_CLOBBER);
  }
  state.counters["FLOP/s"] = benchmark::Counter(1000.0 * 24 * 16 * 2, benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
}

BENCHMARK(BM_PeakInt8Avx512Vnni)->MinTime(0.5);
BENCHMARK(BM_PeakFp32Avx512Fma)->MinTime(0.5);

}  // namespace
