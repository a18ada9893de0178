#pragma once

// Included only by *_avx2.cpp files; static inline as in vector_math_avx512.h.
#include <immintrin.h>

#include "tiledraw/accel.h"

namespace tiledraw::kernels {

// exp(x) as exp_avx512, with 2^n built in the exponent bits (the clamp keeps n
// inside the normal range).
static inline __m256 exp_avx2(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
}

// erf(x) as erf_avx512 (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7).
static inline __m256 erf_avx2(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(ax, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
  __m256 poly = _mm256_set1_ps(1.061405429f);
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-1.453152027f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
  poly = _mm256_mul_ps(poly, t);
  const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(ax, ax)));
  return _mm256_or_ps(_mm256_fnmadd_ps(poly, e, _mm256_set1_ps(1.0f)), sign);
}

static inline float horizontal_sum_avx2(__m256 v) {
  const __m128 pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 two = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)));
}

static inline float horizontal_max_avx2(__m256 v) {
  const __m128 pair = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 two = _mm_max_ps(pair, _mm_movehl_ps(pair, pair));
  return _mm_cvtss_f32(_mm_max_ss(two, _mm_shuffle_ps(two, two, 1)));
}

static inline __m256 activate_avx2(Activation activation, __m256 x) {
  if (activation == Activation::None) return x;
  __m256 t = x;
  if (activation == Activation::GeluTanh) {
    const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    t = _mm256_mul_ps(_mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x), _mm256_set1_ps(1.5957691216057308f));
  }
  const __m256 denominator = _mm256_add_ps(_mm256_set1_ps(1.0f), exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), t)));
  return _mm256_div_ps(x, denominator);
}

// 8 columns of one row; `mask` has all bits set in the lanes to load and store.
static inline void linear_epilogue_avx2(__m256 sum, float row_scale, __m256 col_scale, const float* bias,
                                        Activation activation, bool accumulate, float* y, __m256i mask) {
  __m256 z = _mm256_mul_ps(_mm256_mul_ps(sum, _mm256_set1_ps(row_scale)), col_scale);
  if (bias) z = _mm256_add_ps(z, _mm256_maskload_ps(bias, mask));
  z = activate_avx2(activation, z);
  if (accumulate) z = _mm256_add_ps(z, _mm256_maskload_ps(y, mask));
  _mm256_maskstore_ps(y, mask, z);
}

static inline __m256i lanes_below_avx2(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count > 8 ? 8 : count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace tiledraw::kernels
