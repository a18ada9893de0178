#include <immintrin.h>

#include "accel/panel_weight.h"
#include "kernels/layout/transpose_avx512.h"

namespace tiledraw::accel {

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
        // Each of the panel's 64 rows is a stream, too many for the hardware
        // prefetcher: ask for the row's bytes four blocks on.
        _mm_prefetch(reinterpret_cast<const char*>(w.q + row * w.k + k0 + 256), _MM_HINT_T0);
        r[i] = row < w.n ? _mm512_maskz_loadu_epi8(in_k, w.q + row * w.k + k0) : _mm512_setzero_si512();
        holds_min = _kor_mask64(holds_min, _mm512_cmpeq_epi8_mask(r[i], min));
      }
      kernels::transpose_16x16_dwords_avx512(r);
      for (int g = 0; g < 16; ++g) {
        _mm512_storeu_si512(block_out + g * kGroupBytes + c0 * 4, _mm512_xor_si512(r[g], offset));
      }
    }
  }
  return holds_min != 0;
}

}  // namespace tiledraw::accel
