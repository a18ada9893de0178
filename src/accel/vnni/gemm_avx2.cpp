#include <immintrin.h>

#include <cstring>

#include "accel/vnni/gemm.h"
#include "kernels/activation/vector_math_avx2.h"

namespace tiledraw::accel::vnni {
namespace {

template <int kRows>
void gemm_rows_16_avx2(const GemmTile& t, int64_t col0) {
  __m256i acc[kRows][2];
  for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* b = t.b + col0 * 4;
  for (int64_t g = 0; g < t.k_groups; ++g, b += kGroupBytes) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 32));
    for (int r = 0; r < kRows; ++r) {
      int32_t four;
      std::memcpy(&four, t.a + r * t.lda + 4 * g, 4);
      const __m256i a = _mm256_set1_epi32(four);
      const __m256i a_abs = _mm256_sign_epi8(a, a);
      const __m256i p0 = _mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(b0, a));
      const __m256i p1 = _mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(b1, a));
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
    }
  }
  for (int j = 0; j < 2; ++j) {
    const int64_t col = col0 + 8 * j;
    const int64_t left = t.cols - col;
    if (left <= 0) break;
    const __m256i mask = kernels::lanes_below_avx2(left);
    const __m256 b_scale = _mm256_load_ps(t.b_scale + col);
    for (int r = 0; r < kRows && r < t.rows; ++r) {
      kernels::linear_epilogue_avx2(_mm256_cvtepi32_ps(acc[r][j]), t.a_scale[r], b_scale,
                                    t.bias ? t.bias + col : nullptr, t.activation, t.accumulate,
                                    t.y + r * t.ldy + col, mask);
    }
  }
}

template <int kRows>
void gemm_rows_avx2(const GemmTile& t) {
  for (int64_t col0 = 0; col0 < t.cols; col0 += 16) gemm_rows_16_avx2<kRows>(t, col0);
}

}  // namespace

void qs8_qc8w_gemm_f32__avx2_4x16(const GemmTile& tile) {
  switch (tile.rows) {
    case 1: return gemm_rows_avx2<1>(tile);
    case 2: return gemm_rows_avx2<2>(tile);
    case 3: return gemm_rows_avx2<3>(tile);
    default: return gemm_rows_avx2<4>(tile);
  }
}

}  // namespace tiledraw::accel::vnni
