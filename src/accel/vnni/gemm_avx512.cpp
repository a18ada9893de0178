#include <immintrin.h>

#include <cstring>

#include "accel/vnni/gemm.h"
#include "kernels/activation/vector_math_avx512.h"

namespace tiledraw::accel::vnni {
namespace {

// One accumulator per (row, 16 columns), named rather than in an array: GCC 12
// keeps an array of __m512i in registers but copies each one around every
// VPDPBUSD, which halved the speed.
#define TD_ACCUMULATORS(r) __m512i c##r##0 = zero, c##r##1 = zero, c##r##2 = zero, c##r##3 = zero
#define TD_ROW_STEP(r)                                              \
  if constexpr (kRows > r) {                                        \
    int32_t four;                                                   \
    std::memcpy(&four, t.a + r * t.lda + 4 * g, 4);                 \
    const __m512i a = _mm512_set1_epi32(four);                      \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, b0, a);                  \
    c##r##1 = _mm512_dpbusd_epi32(c##r##1, b1, a);                  \
    c##r##2 = _mm512_dpbusd_epi32(c##r##2, b2, a);                  \
    c##r##3 = _mm512_dpbusd_epi32(c##r##3, b3, a);                  \
  }
#define TD_ROW_EPILOGUE(r, j) \
  if constexpr (kRows > r) epilogue(r, j, c##r##j)
#define TD_COLUMN_EPILOGUE(j)                                                                    \
  TD_ROW_EPILOGUE(0, j); TD_ROW_EPILOGUE(1, j); TD_ROW_EPILOGUE(2, j); TD_ROW_EPILOGUE(3, j); \
  TD_ROW_EPILOGUE(4, j); TD_ROW_EPILOGUE(5, j)

// kActivated false: the tile has no activation, and its epilogue (a few
// instructions per accumulator) is inlined; with an activation each
// accumulator's epilogue is a call. At K = 320 (the SD UNet's first level) the
// calls took as many instructions as a third of the VPDPBUSD loop.
template <int kRows, bool kActivated>
void gemm_rows_avx512(const GemmTile& t) {
  const __m512i zero = _mm512_setzero_si512();
  TD_ACCUMULATORS(0); TD_ACCUMULATORS(1); TD_ACCUMULATORS(2);
  TD_ACCUMULATORS(3); TD_ACCUMULATORS(4); TD_ACCUMULATORS(5);
  // The residual's rows are read at the tile's end, one line per
  // accumulator: fetched now, they arrive while the sums run instead of
  // stalling the epilogue (a third of the layer's time at K = 320).
  if (t.accumulate) {
    for (int64_t r = 0; r < t.rows; ++r) {
      for (int64_t j = 0; j < t.cols; j += 16) _mm_prefetch(reinterpret_cast<const char*>(t.y + r * t.ldy + j), _MM_HINT_T0);
    }
  }
  const int8_t* b = t.b;
  for (int64_t g = 0; g < t.k_groups; ++g, b += kGroupBytes) {
    const __m512i b0 = _mm512_load_si512(b);
    const __m512i b1 = _mm512_load_si512(b + 64);
    const __m512i b2 = _mm512_load_si512(b + 128);
    const __m512i b3 = _mm512_load_si512(b + 192);
    TD_ROW_STEP(0) TD_ROW_STEP(1) TD_ROW_STEP(2) TD_ROW_STEP(3) TD_ROW_STEP(4) TD_ROW_STEP(5)
  }
  const auto epilogue = [&](int r, int j, __m512i acc) __attribute__((always_inline)) {
    const int64_t left = t.cols - 16 * j;
    if (left <= 0 || r >= t.rows) return;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    const __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(t.a_sum[r] * 128)));
    kernels::linear_epilogue_avx512<kActivated>(sum, t.a_scale[r], _mm512_load_ps(t.b_scale + 16 * j),
                                    t.bias ? t.bias + 16 * j : nullptr, t.activation, t.accumulate,
                                    t.y + r * t.ldy + 16 * j, mask);
  };
  TD_COLUMN_EPILOGUE(0);
  TD_COLUMN_EPILOGUE(1);
  TD_COLUMN_EPILOGUE(2);
  TD_COLUMN_EPILOGUE(3);
}

#undef TD_ACCUMULATORS
#undef TD_ROW_STEP
#undef TD_ROW_EPILOGUE
#undef TD_COLUMN_EPILOGUE

template <bool kActivated>
void gemm_avx512(const GemmTile& tile) {
  switch (tile.rows) {
    case 1: return gemm_rows_avx512<1, kActivated>(tile);
    case 2: return gemm_rows_avx512<2, kActivated>(tile);
    case 3: return gemm_rows_avx512<3, kActivated>(tile);
    case 4: return gemm_rows_avx512<4, kActivated>(tile);
    case 5: return gemm_rows_avx512<5, kActivated>(tile);
    default: return gemm_rows_avx512<6, kActivated>(tile);
  }
}

}  // namespace

void qs8_qc8w_gemm_f32__avx512vnni_6x64(const GemmTile& tile) {
  if (tile.activation == Activation::None) return gemm_avx512<false>(tile);
  gemm_avx512<true>(tile);
}

}  // namespace tiledraw::accel::vnni
