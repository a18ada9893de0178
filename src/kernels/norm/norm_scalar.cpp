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

}  // namespace

const RowKernels kRowScalar = {layer_norm_scalar, rms_norm_scalar, softmax_scalar};

const RowKernels& row_kernels(IsaLevel level) { return level >= IsaLevel::Avx512 ? kRowAvx512 : kRowScalar; }

}  // namespace tiledraw::kernels
