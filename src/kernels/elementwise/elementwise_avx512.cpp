#include "kernels/activation/vector_math_avx512.h"
#include "kernels/elementwise/elementwise.h"

namespace tiledraw::kernels {
namespace {

__mmask16 lanes_avx512(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}

__m512 unary_avx512(Unary op, __m512 x) {
  switch (op) {
    case Unary::GeluTanh:
      return activate_avx512(Activation::GeluTanh, x);
    case Unary::GeluErf: {
      const __m512 cdf = _mm512_fmadd_ps(erf_avx512(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))),
                                         _mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
      return _mm512_mul_ps(x, cdf);
    }
    case Unary::QuickGelu:  // silu(1.702 x) / 1.702
      return _mm512_div_ps(activate_avx512(Activation::Silu, _mm512_mul_ps(x, _mm512_set1_ps(1.702f))), _mm512_set1_ps(1.702f));
    case Unary::Silu:
      break;
  }
  return activate_avx512(Activation::Silu, x);
}

void unary_rows_avx512(Unary op, const float* x, float* y, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 mask = lanes_avx512(count - i);
    _mm512_mask_storeu_ps(y + i, mask, unary_avx512(op, _mm512_maskz_loadu_ps(mask, x + i)));
  }
}

void binary_rows_avx512(Binary op, const float* a, const float* b, bool b_is_row, float* y, int64_t rows,
                        int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* br = b_is_row ? b : b + r * cols;
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 mask = lanes_avx512(cols - c);
      const __m512 va = _mm512_maskz_loadu_ps(mask, a + r * cols + c);
      const __m512 vb = _mm512_maskz_loadu_ps(mask, br + c);
      _mm512_mask_storeu_ps(y + r * cols + c, mask, op == Binary::Add ? _mm512_add_ps(va, vb) : _mm512_mul_ps(va, vb));
    }
  }
}

void modulate_rows_avx512(const float* x, const float* scale, const float* shift, float* y, int64_t rows,
                          int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 mask = lanes_avx512(cols - c);
      const __m512 one_plus = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_maskz_loadu_ps(mask, scale + c));
      const __m512 scaled = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + r * cols + c), one_plus);
      _mm512_mask_storeu_ps(y + r * cols + c, mask, _mm512_add_ps(scaled, _mm512_maskz_loadu_ps(mask, shift + c)));
    }
  }
}

void gated_residual_rows_avx512(const float* x, const float* y, const float* gate, float* out, int64_t rows,
                                int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 mask = lanes_avx512(cols - c);
      const __m512 gated = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, gate + c), _mm512_maskz_loadu_ps(mask, y + r * cols + c));
      _mm512_mask_storeu_ps(out + r * cols + c, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, x + r * cols + c), gated));
    }
  }
}

}  // namespace

const ElementwiseKernels kElementwiseAvx512 = {unary_rows_avx512, binary_rows_avx512, modulate_rows_avx512,
                                               gated_residual_rows_avx512};

}  // namespace tiledraw::kernels
