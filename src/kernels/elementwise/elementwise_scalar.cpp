#include <cmath>

#include "kernels/elementwise/elementwise.h"

namespace tiledraw::kernels {
namespace {

// The oracle: double precision, the textbook formulas.
float unary_one(Unary op, float value) {
  const double x = value;
  switch (op) {
    case Unary::GeluTanh:
      return static_cast<float>(0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
    case Unary::GeluErf:
      return static_cast<float>(0.5 * x * (1.0 + std::erf(x * 0.7071067811865476)));
    case Unary::QuickGelu:
      return static_cast<float>(x / (1.0 + std::exp(-1.702 * x)));
    case Unary::Silu:
      break;
  }
  return static_cast<float>(x / (1.0 + std::exp(-x)));
}

void unary_scalar(Unary op, const float* x, float* y, int64_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) y[i] = unary_one(op, x[i]);
}

void binary_scalar(Binary op, const float* a, const float* b, bool b_is_row, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* br = b_is_row ? b : b + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      y[r * cols + c] = op == Binary::Add ? a[r * cols + c] + br[c] : a[r * cols + c] * br[c];
    }
  }
}

void modulate_scalar(const float* x, const float* scale, const float* shift, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = x[r * cols + c] * (1.0f + scale[c]) + shift[c];
  }
}

void gated_residual_scalar(const float* x, const float* y, const float* gate, float* out, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = x[r * cols + c] + gate[c] * y[r * cols + c];
  }
}

}  // namespace

const ElementwiseKernels kElementwiseScalar = {unary_scalar, binary_scalar, modulate_scalar, gated_residual_scalar};

const ElementwiseKernels& elementwise_kernels(IsaLevel level) {
  return *for_isa(level, &kElementwiseScalar, &kElementwiseAvx2, &kElementwiseAvx512);
}

}  // namespace tiledraw::kernels
