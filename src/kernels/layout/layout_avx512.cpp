#include <immintrin.h>

#include "kernels/layout/layout.h"
#include "kernels/layout/transpose_avx512.h"

namespace tiledraw::kernels {

void f32_transpose__avx512(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out, int64_t ld_out) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int row_count = static_cast<int>(rows - r0 < 16 ? rows - r0 : 16);
    const auto row_mask = static_cast<__mmask16>((1u << row_count) - 1u);
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int col_count = static_cast<int>(cols - c0 < 16 ? cols - c0 : 16);
      const auto col_mask = static_cast<__mmask16>((1u << col_count) - 1u);
      __m512i block[16];
      for (int i = 0; i < 16; ++i) {
        block[i] = i < row_count ? _mm512_maskz_loadu_epi32(col_mask, in + (r0 + i) * ld_in + c0) : _mm512_setzero_si512();
      }
      transpose_16x16_dwords_avx512(block);
      for (int i = 0; i < col_count; ++i) _mm512_mask_storeu_epi32(out + (c0 + i) * ld_out + r0, row_mask, block[i]);
    }
  }
}

}  // namespace tiledraw::kernels
