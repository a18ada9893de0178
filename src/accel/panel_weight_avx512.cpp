#include <immintrin.h>

#include "accel/panel_weight.h"

namespace tiledraw::accel {
namespace {

// Transposes a 16 x 16 matrix of 4-byte groups held one row per register.
inline void transpose_16x16_dwords_avx512(__m512i (&r)[16]) {
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

}  // namespace

// Blocks of 16 weight rows x 64 bytes of k (16 groups) become, transposed,
// 16 groups x 16 columns: a quarter of 16 consecutive 256-byte group records.
bool pack_panel_avx512(const WeightView& w, int64_t panel, int64_t k_groups, bool shifted, int8_t* out) {
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(shifted ? 0x80 : 0));
  const __m512i min = _mm512_set1_epi8(-128);
  __mmask64 holds_min = 0;
  const int64_t first_row = panel * kPanel;
  for (int64_t k0 = 0; k0 < k_groups * 4; k0 += 64) {
    const int64_t k_left = w.k - k0;  // at least 1: the padding is under 64
    const __mmask64 in_k = _cvtu64_mask64(k_left >= 64 ? ~uint64_t{0} : (uint64_t{1} << k_left) - 1);
    int8_t* block_out = out + k0 / 4 * kGroupBytes;
    for (int64_t c0 = 0; c0 < kPanel; c0 += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t row = first_row + c0 + i;
        r[i] = row < w.n ? _mm512_maskz_loadu_epi8(in_k, w.q + row * w.k + k0) : _mm512_setzero_si512();
        holds_min = _kor_mask64(holds_min, _mm512_cmpeq_epi8_mask(r[i], min));
      }
      transpose_16x16_dwords_avx512(r);
      for (int g = 0; g < 16; ++g) {
        _mm512_store_si512(block_out + g * kGroupBytes + c0 * 4, _mm512_xor_si512(r[g], offset));
      }
    }
  }
  return holds_min != 0;
}

}  // namespace tiledraw::accel
