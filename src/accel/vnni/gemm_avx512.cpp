#include <immintrin.h>

#include <cstring>

#include "accel/vnni/gemm.h"
#include "kernels/activation/vector_math_avx512.h"

namespace tiledraw::accel::vnni {
namespace {

template <int kRows>
void gemm_rows(const GemmTile& t) {
  __m512i acc[kRows][4];
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_si512();
  }
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const int8_t* b = t.b;
  for (int64_t g = 0; g < t.k_groups; ++g, b += kGroupBytes) {
    const __m512i b0 = _mm512_load_si512(b);
    const __m512i b1 = _mm512_load_si512(b + 64);
    const __m512i b2 = _mm512_load_si512(b + 128);
    const __m512i b3 = _mm512_load_si512(b + 192);
    for (int r = 0; r < kRows; ++r) {
      int32_t four;
      std::memcpy(&four, t.a + r * t.lda + 4 * g, 4);
      const __m512i a = _mm512_xor_si512(_mm512_set1_epi32(four), flip);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], a, b0);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], a, b1);
      acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], a, b2);
      acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], a, b3);
    }
  }
  for (int j = 0; j < 4; ++j) {
    const int64_t left = t.cols - 16 * j;
    if (left <= 0) break;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    const __m512i correction = _mm512_slli_epi32(_mm512_load_si512(t.b_sum + 16 * j), 7);
    const __m512 b_scale = _mm512_load_ps(t.b_scale + 16 * j);
    for (int r = 0; r < kRows && r < t.rows; ++r) {
      const __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][j], correction));
      kernels::linear_epilogue_avx512(sum, t.a_scale[r], b_scale, t.bias ? t.bias + 16 * j : nullptr, t.activation,
                                      t.accumulate, t.y + r * t.ldy + 16 * j, mask);
    }
  }
}

}  // namespace

void qs8_qc8w_gemm_f32__avx512vnni_6x64(const GemmTile& tile) {
  switch (tile.rows) {
    case 1: return gemm_rows<1>(tile);
    case 2: return gemm_rows<2>(tile);
    case 3: return gemm_rows<3>(tile);
    case 4: return gemm_rows<4>(tile);
    case 5: return gemm_rows<5>(tile);
    default: return gemm_rows<6>(tile);
  }
}

}  // namespace tiledraw::accel::vnni
