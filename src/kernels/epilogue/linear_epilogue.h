#pragma once

#include <cstdint>

#include "tiledraw/accel.h"
#include "tiledraw/cpu.h"

// The 8-bit S linear layer's epilogue as a pass over float sums:
//   y[r, c] = act((sums[r, c] * row_scale[r]) * col_scale[c] + bias[c])  (+ y[r, c] when accumulating)
// For backends whose matmul leaves the sums in memory (oneDNN). `sums` may be
// `y` itself when not accumulating. `bias` may be null.
namespace tiledraw::kernels {

struct LinearEpilogueArgs {
  const float* sums;
  int64_t ld_sums;
  const float* row_scale;
  const float* col_scale;
  const float* bias;
  Activation activation;
  bool accumulate;
  float* y;
  int64_t ldy;
  int64_t rows;
  int64_t cols;
};

using LinearEpilogueFn = void (*)(const LinearEpilogueArgs&);

void f32_linear_epilogue__scalar(const LinearEpilogueArgs& args);
void f32_linear_epilogue__avx2(const LinearEpilogueArgs& args);
void f32_linear_epilogue__avx512(const LinearEpilogueArgs& args);

LinearEpilogueFn linear_epilogue_kernel(IsaLevel level);

}  // namespace tiledraw::kernels
