#pragma once

#include <cstdint>

// The float path for layers kept in floating point: y[m, n] = x[m, k] w[n, k]^T
// (+ bias[n]), w as PyTorch stores a linear or flattened conv weight. It runs on
// oneDNN's f32 matmul (primitives cached per shape, weights reordered per call
// since they are not packed ahead); activations are applied by the caller.
namespace tiledraw::kernels {

void f32_gemm_onednn(const float* x, int64_t m, int64_t k, const float* w, int64_t n, const float* bias, float* y,
                     int64_t ldy);

}  // namespace tiledraw::kernels
