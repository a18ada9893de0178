#include "kernels/activation/vector_math_avx2.h"
#include "kernels/epilogue/linear_epilogue.h"

namespace tiledraw::kernels {

void f32_linear_epilogue__avx2(const LinearEpilogueArgs& a) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t c = 0; c < a.cols; c += 8) {
      const __m256i mask = lanes_below_avx2(a.cols - c);
      linear_epilogue_avx2(_mm256_maskload_ps(a.sums + r * a.ld_sums + c, mask), a.row_scale[r],
                           _mm256_maskload_ps(a.col_scale + c, mask), a.bias ? a.bias + c : nullptr, a.activation,
                           a.accumulate, a.y + r * a.ldy + c, mask);
    }
  }
}

}  // namespace tiledraw::kernels
