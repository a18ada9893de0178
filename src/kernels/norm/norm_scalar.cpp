#include <cmath>

#include "kernels/norm/norm.h"

namespace tiledraw::kernels {
namespace {

// The oracles: sums in double.
void layer_norm_scalar(const float* x, const float* gamma, const float* beta, float eps, float* y, int64_t rows,
                       int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    double mean = 0.0, var = 0.0;
    for (int64_t c = 0; c < cols; ++c) mean += in[c];
    mean /= static_cast<double>(cols);
    for (int64_t c = 0; c < cols; ++c) var += (in[c] - mean) * (in[c] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(cols) + eps);
    for (int64_t c = 0; c < cols; ++c) {
      double v = (in[c] - mean) * rstd;
      if (gamma) v *= gamma[c];
      if (beta) v += beta[c];
      y[r * cols + c] = static_cast<float>(v);
    }
  }
}

void rms_norm_scalar(const float* x, const float* gamma, float eps, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    double squares = 0.0;
    for (int64_t c = 0; c < cols; ++c) squares += double(in[c]) * in[c];
    const double rrms = 1.0 / std::sqrt(squares / static_cast<double>(cols) + eps);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = static_cast<float>(in[c] * rrms * (gamma ? gamma[c] : 1.0f));
  }
}

void softmax_scalar(const float* x, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float max = in[0];
    for (int64_t c = 1; c < cols; ++c) max = std::fmax(max, in[c]);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(double(in[c]) - max);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = static_cast<float>(std::exp(double(in[c]) - max) / sum);
  }
}

void group_norm_scalar(const float* x, const float* gamma, const float* beta, float eps, bool silu, float* y,
                       int64_t batch, int64_t channels, int64_t spatial, int64_t groups) {
  const int64_t per_group = channels / groups;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t first = (b * channels + g * per_group) * spatial, count = per_group * spatial;
      double mean = 0.0, var = 0.0;
      for (int64_t i = 0; i < count; ++i) mean += x[first + i];
      mean /= static_cast<double>(count);
      for (int64_t i = 0; i < count; ++i) var += (x[first + i] - mean) * (x[first + i] - mean);
      const double rstd = 1.0 / std::sqrt(var / static_cast<double>(count) + eps);
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
        for (int64_t i = 0; i < spatial; ++i) {
          const int64_t at = (b * channels + c) * spatial + i;
          double v = (x[at] - mean) * rstd;
          if (gamma) v *= gamma[c];
          if (beta) v += beta[c];
          if (silu) v = v / (1.0 + std::exp(-v));
          y[at] = static_cast<float>(v);
        }
      }
    }
  }
}

}  // namespace

const RowKernels kRowScalar = {layer_norm_scalar, rms_norm_scalar, softmax_scalar, group_norm_scalar};

const RowKernels& row_kernels(IsaLevel level) {
  return *for_isa(level, &kRowScalar, &kRowAvx2, &kRowAvx512);
}

}  // namespace tiledraw::kernels
