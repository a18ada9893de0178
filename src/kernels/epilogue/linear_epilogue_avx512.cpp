#include "kernels/activation/vector_math_avx512.h"
#include "kernels/epilogue/linear_epilogue.h"

namespace tiledraw::kernels {

void f32_linear_epilogue__avx512(const LinearEpilogueArgs& a) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t c = 0; c < a.cols; c += 16) {
      const int64_t left = a.cols - c;
      const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      linear_epilogue_avx512(_mm512_maskz_loadu_ps(mask, a.sums + r * a.ld_sums + c), a.row_scale[r],
                             _mm512_maskz_loadu_ps(mask, a.col_scale + c), a.bias ? a.bias + c : nullptr,
                             a.activation, a.accumulate, a.y + r * a.ldy + c, mask);
    }
  }
}

}  // namespace tiledraw::kernels
