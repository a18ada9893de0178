#include "kernels/activation/activation.h"
#include "kernels/epilogue/linear_epilogue.h"

namespace tiledraw::kernels {

void f32_linear_epilogue__scalar(const LinearEpilogueArgs& a) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t c = 0; c < a.cols; ++c) {
      float z = a.sums[r * a.ld_sums + c] * a.row_scale[r] * a.col_scale[c];
      if (a.bias) z += a.bias[c];
      z = kernels::activate(a.activation, z);
      float& out = a.y[r * a.ldy + c];
      out = a.accumulate ? out + z : z;
    }
  }
}

LinearEpilogueFn linear_epilogue_kernel(IsaLevel level) {
  return for_isa(level, f32_linear_epilogue__scalar, f32_linear_epilogue__avx2, f32_linear_epilogue__avx512);
}

}  // namespace tiledraw::kernels
