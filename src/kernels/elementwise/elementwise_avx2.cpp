#include "kernels/activation/vector_math_avx2.h"
#include "kernels/elementwise/elementwise.h"

namespace tiledraw::kernels {
namespace {

// Masked loads and stores of 8 lanes: tails cost no scalar loop.
__m256 load_avx2(const float* p, __m256i mask) { return _mm256_maskload_ps(p, mask); }

__m256 unary_avx2(Unary op, __m256 x) {
  switch (op) {
    case Unary::GeluTanh:
      return activate_avx2(Activation::GeluTanh, x);
    case Unary::GeluErf: {
      const __m256 cdf = _mm256_fmadd_ps(erf_avx2(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f))),
                                         _mm256_set1_ps(0.5f), _mm256_set1_ps(0.5f));
      return _mm256_mul_ps(x, cdf);
    }
    case Unary::QuickGelu:  // silu(1.702 x) / 1.702
      return _mm256_div_ps(activate_avx2(Activation::Silu, _mm256_mul_ps(x, _mm256_set1_ps(1.702f))), _mm256_set1_ps(1.702f));
    case Unary::Silu:
      break;
  }
  return activate_avx2(Activation::Silu, x);
}

void unary_rows_avx2(Unary op, const float* x, float* y, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; i += 8) {
    const __m256i mask = lanes_below_avx2(count - i);
    _mm256_maskstore_ps(y + i, mask, unary_avx2(op, load_avx2(x + i, mask)));
  }
}

void binary_rows_avx2(Binary op, const float* a, const float* b, bool b_is_row, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* br = b_is_row ? b : b + r * cols;
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      const __m256 va = load_avx2(a + r * cols + c, mask), vb = load_avx2(br + c, mask);
      _mm256_maskstore_ps(y + r * cols + c, mask, op == Binary::Add ? _mm256_add_ps(va, vb) : _mm256_mul_ps(va, vb));
    }
  }
}

void modulate_rows_avx2(const float* x, const float* scale, const float* shift, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      const __m256 one_plus = _mm256_add_ps(_mm256_set1_ps(1.0f), load_avx2(scale + c, mask));
      const __m256 scaled = _mm256_mul_ps(load_avx2(x + r * cols + c, mask), one_plus);
      _mm256_maskstore_ps(y + r * cols + c, mask, _mm256_add_ps(scaled, load_avx2(shift + c, mask)));
    }
  }
}

void gated_residual_rows_avx2(const float* x, const float* y, const float* gate, float* out, int64_t rows,
                              int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      const __m256 gated = _mm256_mul_ps(load_avx2(gate + c, mask), load_avx2(y + r * cols + c, mask));
      _mm256_maskstore_ps(out + r * cols + c, mask, _mm256_add_ps(load_avx2(x + r * cols + c, mask), gated));
    }
  }
}

}  // namespace

const ElementwiseKernels kElementwiseAvx2 = {unary_rows_avx2, binary_rows_avx2, modulate_rows_avx2,
                                             gated_residual_rows_avx2};

}  // namespace tiledraw::kernels
