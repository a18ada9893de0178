#include <immintrin.h>

#include "kernels/quantize/quantize_rows.h"

namespace tiledraw::kernels {

void f32_qs8_quantize_rows__avx2(const float* x, size_t rows, size_t cols, int8_t* q, float* scales) {
  const size_t body = cols - cols % 8;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 lo = _mm256_set1_ps(-127.0f);
  const __m256 hi = _mm256_set1_ps(127.0f);
  const __m256 infinity = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    int8_t* out = q + r * cols;
    __m256 absmax8 = _mm256_setzero_ps(), not_finite8 = _mm256_setzero_ps();
    for (size_t k = 0; k < body; k += 8) {
      const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(row + k));
      absmax8 = _mm256_max_ps(absmax8, a);
      not_finite8 = _mm256_or_ps(not_finite8, _mm256_cmp_ps(a, infinity, _CMP_NLT_UQ));  // NaN or Inf
    }
    bool finite = _mm256_movemask_ps(not_finite8) == 0;
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, absmax8);
    float absmax = 0.0f;
    for (float lane : lanes) absmax = lane > absmax ? lane : absmax;
    for (size_t k = body; k < cols; ++k) {
      const float a = row[k] < 0.0f ? -row[k] : row[k];
      absmax = a > absmax ? a : absmax;
      finite &= a < std::numeric_limits<float>::infinity();
    }
    if (!finite) {
      qs8_non_finite_row(out, cols, scales + r);
      continue;
    }
    const float scale = qs8_scale_from_absmax(absmax);
    scales[r] = scale;
    const __m256 vscale = _mm256_set1_ps(scale);
    for (size_t k = 0; k < body; k += 8) {
      const __m256 v = _mm256_div_ps(_mm256_loadu_ps(row + k), vscale);
      const __m256i i32 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
      const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + k), _mm_packs_epi16(i16, i16));
    }
    for (size_t k = body; k < cols; ++k) {
      const __m128 v = _mm_div_ss(_mm_set_ss(row[k]), _mm256_castps256_ps128(vscale));
      out[k] = static_cast<int8_t>(_mm_cvtss_si32(_mm_min_ss(_mm_max_ss(v, _mm256_castps256_ps128(lo)), _mm256_castps256_ps128(hi))));
    }
  }
}

}  // namespace tiledraw::kernels
