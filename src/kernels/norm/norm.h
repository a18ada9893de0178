#pragma once

#include <cstdint>

#include "tiledraw/cpu.h"

// Row-wise normalisations of contiguous float rows (y may be x):
//   layer norm  y = (x - mean) / sqrt(var + eps) * gamma + beta   (biased variance, as PyTorch)
//   RMS norm    y = x / sqrt(mean(x^2) + eps) * gamma
//   softmax     y = exp(x - max) / sum exp(x - max)
//   group norm  over x [batch, channels, spatial]: layer norm of each group of
//               channels / groups consecutive channels, then a per-channel
//               gamma and beta, then SiLU when asked (the VAE's GroupNorm -> SiLU)
// gamma and beta may be null (no affine).
namespace tiledraw::kernels {

struct RowKernels {
  void (*layer_norm)(const float* x, const float* gamma, const float* beta, float eps, float* y, int64_t rows,
                     int64_t cols);
  void (*rms_norm)(const float* x, const float* gamma, float eps, float* y, int64_t rows, int64_t cols);
  void (*softmax)(const float* x, float* y, int64_t rows, int64_t cols);
  void (*group_norm)(const float* x, const float* gamma, const float* beta, float eps, bool silu, float* y,
                     int64_t batch, int64_t channels, int64_t spatial, int64_t groups);
};

extern const RowKernels kRowScalar;
extern const RowKernels kRowAvx2;
extern const RowKernels kRowAvx512;
const RowKernels& row_kernels(IsaLevel level);

}  // namespace tiledraw::kernels
