#include <cmath>

#include "kernels/quantize/quantize_rows.h"

namespace tiledraw::kernels {

void f32_qs8_quantize_rows__scalar(const float* x, size_t rows, size_t cols, int8_t* q, float* scales) {
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    float absmax = 0.0f;
    bool finite = true;
    for (size_t k = 0; k < cols; ++k) {
      absmax = std::fmax(absmax, std::fabs(row[k]));
      finite &= std::isfinite(row[k]);
    }
    if (!finite) {
      qs8_non_finite_row(q + r * cols, cols, scales + r);
      continue;
    }
    const float scale = qs8_scale_from_absmax(absmax);
    scales[r] = scale;
    for (size_t k = 0; k < cols; ++k) {
      const float v = row[k] / scale;
      const float clamped = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
      // Adding and removing 1.5 * 2^23 rounds half to even for |v| < 2^22; unlike
      // nearbyint it needs no SSE4.1 and no call, so the loop vectorizes on plain x86-64.
      q[r * cols + k] = static_cast<int8_t>((clamped + 12582912.0f) - 12582912.0f);
    }
  }
}

int32_t quantize_padded_row(QuantizeRowsFn kernel, const float* x, size_t cols, size_t stride, int8_t* q,
                            float* scale) {
  kernel(x, 1, cols, q, scale);
  std::memset(q + cols, 0, stride - cols);
  int32_t sum = 0;
  for (size_t k = 0; k < cols; ++k) sum += q[k];
  return sum;
}

QuantizeRowsFn quantize_rows_kernel(IsaLevel level) {
  return for_isa(level, f32_qs8_quantize_rows__scalar, f32_qs8_quantize_rows__avx2, f32_qs8_quantize_rows__avx512);
}

}  // namespace tiledraw::kernels
