#pragma once

#include <cstdint>

#include "tiledraw/cpu.h"

// Elementwise kernels over contiguous float rows. Broadcasting is by rows:
// an operand of `cols` elements (a vector) is applied to every row.
namespace tiledraw::kernels {

// QuickGelu is x sigmoid(1.702 x), the activation of OpenAI's CLIP text encoder.
enum class Unary : uint8_t { GeluTanh, GeluErf, Silu, QuickGelu };
enum class Binary : uint8_t { Add, Mul };

struct ElementwiseKernels {
  // y[i] = f(x[i]) for `count` elements; y may be x.
  void (*unary)(Unary op, const float* x, float* y, int64_t count);
  // y[r, c] = a[r, c] op b[r?, c]: b is [rows, cols], or [cols] when b_is_row.
  void (*binary)(Binary op, const float* a, const float* b, bool b_is_row, float* y, int64_t rows, int64_t cols);
  // The adaLN modulation y[r, c] = x[r, c] * (1 + scale[c]) + shift[c]; y may be x.
  void (*modulate)(const float* x, const float* scale, const float* shift, float* y, int64_t rows, int64_t cols);
  // The gated residual out[r, c] = x[r, c] + gate[c] * y[r, c]; out may be x.
  void (*gated_residual)(const float* x, const float* y, const float* gate, float* out, int64_t rows, int64_t cols);
};

extern const ElementwiseKernels kElementwiseScalar;
extern const ElementwiseKernels kElementwiseAvx2;
extern const ElementwiseKernels kElementwiseAvx512;
const ElementwiseKernels& elementwise_kernels(IsaLevel level);

}  // namespace tiledraw::kernels
