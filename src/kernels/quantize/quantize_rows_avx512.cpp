#include <immintrin.h>

#include "kernels/quantize/quantize_rows.h"

namespace tiledraw::kernels {

void f32_qs8_quantize_rows__avx512(const float* x, size_t rows, size_t cols, int8_t* q, float* scales) {
  const size_t tail = cols % 16;
  const size_t body = cols - tail;
  const __mmask16 tail_mask = static_cast<__mmask16>((1u << tail) - 1u);
  const __m512 lo = _mm512_set1_ps(-127.0f);
  const __m512 hi = _mm512_set1_ps(127.0f);
  const __m512 infinity = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    int8_t* out = q + r * cols;
    __m512 absmax = _mm512_setzero_ps();
    __mmask16 not_finite = 0;
    for (size_t k = 0; k < cols; k += 16) {
      const __mmask16 mask = k < body ? static_cast<__mmask16>(0xffff) : tail_mask;
      const __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, row + k));
      absmax = _mm512_max_ps(absmax, a);
      not_finite |= _mm512_cmp_ps_mask(a, infinity, _CMP_NLT_UQ);  // NaN or Inf
    }
    if (not_finite) {
      qs8_non_finite_row(out, cols, scales + r);
      continue;
    }
    const float scale = qs8_scale_from_absmax(_mm512_reduce_max_ps(absmax));
    scales[r] = scale;
    const __m512 vscale = _mm512_set1_ps(scale);
    for (size_t k = 0; k < cols; k += 16) {
      const __mmask16 mask = k < body ? static_cast<__mmask16>(0xffff) : tail_mask;
      const __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(mask, row + k), vscale);
      const __m512i rounded = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, lo), hi));
      _mm_mask_storeu_epi8(out + k, mask, _mm512_cvtsepi32_epi8(rounded));
    }
  }
}

}  // namespace tiledraw::kernels
