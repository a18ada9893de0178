#pragma once

// Included only by *_avx512.cpp files. Everything is static inline so that each
// translation unit keeps its own copy (see docs/ARCHITECTURE.md, ISA rules).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "tiledraw/accel.h"

namespace tiledraw::kernels {

// exp(x) per float lane: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite split of
// ln2), a degree-6 Taylor polynomial for exp(r), 2^n applied with VSCALEFPS.
// Relative error about 2e-7 over the clamped range.
static inline __m512 exp_avx512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.5f)), _mm512_set1_ps(-88.5f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// erf(x) by Abramowitz and Stegun 7.1.26: 1 - poly(t) exp(-x^2) with
// t = 1 / (1 + p |x|), absolute error below 1.5e-7; odd in x.
static inline __m512 erf_avx512(__m512 x) {
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
  __m512 poly = _mm512_set1_ps(1.061405429f);
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-1.453152027f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(1.421413741f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-0.284496736f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(0.254829592f));
  poly = _mm512_mul_ps(poly, t);
  const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(ax, ax)));
  const __m512 magnitude = _mm512_fnmadd_ps(poly, e, _mm512_set1_ps(1.0f));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(magnitude),
                                             _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))));
}

// x * sigmoid(t) = x / (1 + exp(-t)): SiLU with t = x, and GELU (tanh form)
// with t = 2 sqrt(2/pi) (x + 0.044715 x^3), since (1 + tanh(u)) / 2 = sigmoid(2u).
static inline __m512 activate_avx512(Activation activation, __m512 x) {
  if (activation == Activation::None) return x;
  __m512 t = x;
  if (activation == Activation::GeluTanh) {
    const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    t = _mm512_mul_ps(_mm512_fmadd_ps(x3, _mm512_set1_ps(0.044715f), x), _mm512_set1_ps(1.5957691216057308f));
  }
  const __m512 denominator = _mm512_add_ps(_mm512_set1_ps(1.0f), exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), t)));
  return _mm512_div_ps(x, denominator);
}

// The linear layer's epilogue on 16 columns of one row, from float sums:
// y = act((sum * sx) * sw + bias) (+ y). The oracle's order of operations, so
// that without an activation the result matches it bit for bit. kActivated
// false leaves out the activation (the caller knows there is none), so that
// what remains is small enough to inline into a kernel's every accumulator.
template <bool kActivated = true>
static inline void linear_epilogue_avx512(__m512 sum, float row_scale, __m512 col_scale, const float* bias,
                                          Activation activation, bool accumulate, float* y, __mmask16 mask) {
  __m512 z = _mm512_mul_ps(_mm512_mul_ps(sum, _mm512_set1_ps(row_scale)), col_scale);
  if (bias) z = _mm512_add_ps(z, _mm512_maskz_loadu_ps(mask, bias));
  if constexpr (kActivated) z = activate_avx512(activation, z);
  if (accumulate) z = _mm512_add_ps(z, _mm512_maskz_loadu_ps(mask, y));
  _mm512_mask_storeu_ps(y, mask, z);
}

}  // namespace tiledraw::kernels
