#pragma once

#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "tiledraw/cpu.h"

// Row-wise symmetric int8 quantization (8-bit S):
// scale = max(absmax / 127, FLT_MIN), q = clamp(round_half_even(x / scale), -127, 127).
// A row holding NaN or Inf becomes zeros with a NaN scale, so that what is
// computed from it is NaN too (and the run's NaN check names the op), and no
// non-finite value meets a float-to-int conversion.
// Every variant gives the same bits; names state element types and ISA.
namespace tiledraw::kernels {

using QuantizeRowsFn = void (*)(const float* x, size_t rows, size_t cols, int8_t* q, float* scales);

void f32_qs8_quantize_rows__scalar(const float* x, size_t rows, size_t cols, int8_t* q, float* scales);
void f32_qs8_quantize_rows__avx2(const float* x, size_t rows, size_t cols, int8_t* q, float* scales);
void f32_qs8_quantize_rows__avx512(const float* x, size_t rows, size_t cols, int8_t* q, float* scales);

QuantizeRowsFn quantize_rows_kernel(IsaLevel level);

// One row of `cols` values into a row of `stride` bytes, as the accelerators
// read activations: quantized by `kernel`, zeros past cols. Returns
// sum_k q[k], for kernels that multiply unsigned bytes.
int32_t quantize_padded_row(QuantizeRowsFn kernel, const float* x, size_t cols, size_t stride, int8_t* q,
                            float* scale);

// Kept static so that each ISA's translation unit has its own copy: a shared
// inline function could be linked from the AVX-512 unit into scalar code.
static inline float qs8_scale_from_absmax(float absmax) {
  const float scale = absmax / 127.0f;
  return scale < FLT_MIN ? FLT_MIN : scale;
}

static inline void qs8_non_finite_row(int8_t* q, size_t cols, float* scale) {
  std::memset(q, 0, cols);
  *scale = std::numeric_limits<float>::quiet_NaN();
}

}  // namespace tiledraw::kernels
