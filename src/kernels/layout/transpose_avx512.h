#pragma once

#include <immintrin.h>

// Included only by *_avx512.cpp files; static so that no copy is shared with
// code built for a lower ISA.
namespace tiledraw::kernels {

// Transposes a 16 x 16 matrix of 4-byte elements held one row per register.
static inline void transpose_16x16_dwords_avx512(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4q + s], in 128-bit lane L, holds rows 4q..4q+3 of column 4L + s.
  __m512i u[16];
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
  }
  for (int s = 0; s < 4; ++s) {
    const __m512i low_even = _mm512_shuffle_i32x4(u[s], u[4 + s], 0x88);
    const __m512i low_odd = _mm512_shuffle_i32x4(u[s], u[4 + s], 0xdd);
    const __m512i high_even = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0x88);
    const __m512i high_odd = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0xdd);
    r[s] = _mm512_shuffle_i32x4(low_even, high_even, 0x88);
    r[4 + s] = _mm512_shuffle_i32x4(low_odd, high_odd, 0x88);
    r[8 + s] = _mm512_shuffle_i32x4(low_even, high_even, 0xdd);
    r[12 + s] = _mm512_shuffle_i32x4(low_odd, high_odd, 0xdd);
  }
}

}  // namespace tiledraw::kernels
