#include <cmath>

#include "kernels/activation/vector_math_avx2.h"
#include "kernels/norm/norm.h"

namespace tiledraw::kernels {
namespace {

__m256 load_avx2(const float* p, int64_t left) { return _mm256_maskload_ps(p, lanes_below_avx2(left)); }

// Mean and 1 / sqrt(variance + eps) of `count` floats, two passes as the AVX-512 kernel.
void moments_avx2(const float* in, int64_t count, float eps, float* mean, float* rstd) {
  __m256 sum = _mm256_setzero_ps();
  for (int64_t i = 0; i < count; i += 8) sum = _mm256_add_ps(sum, load_avx2(in + i, count - i));
  *mean = horizontal_sum_avx2(sum) / static_cast<float>(count);
  const __m256 vmean = _mm256_set1_ps(*mean);
  __m256 squares = _mm256_setzero_ps();
  for (int64_t i = 0; i < count; i += 8) {
    const __m256i mask = lanes_below_avx2(count - i);
    const __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(in + i, mask), vmean), _mm256_castsi256_ps(mask));
    squares = _mm256_fmadd_ps(d, d, squares);
  }
  *rstd = 1.0f / std::sqrt(horizontal_sum_avx2(squares) / static_cast<float>(count) + eps);
}

void layer_norm_avx2(const float* x, const float* gamma, const float* beta, float eps, float* y, int64_t rows,
                     int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float mean, rstd;
    moments_avx2(in, cols, eps, &mean, &rstd);
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(in + c, mask), _mm256_set1_ps(mean)), _mm256_set1_ps(rstd));
      if (gamma) v = _mm256_mul_ps(v, _mm256_maskload_ps(gamma + c, mask));
      if (beta) v = _mm256_add_ps(v, _mm256_maskload_ps(beta + c, mask));
      _mm256_maskstore_ps(y + r * cols + c, mask, v);
    }
  }
}

void rms_norm_avx2(const float* x, const float* gamma, float eps, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    __m256 squares = _mm256_setzero_ps();
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256 v = load_avx2(in + c, cols - c);
      squares = _mm256_fmadd_ps(v, v, squares);
    }
    const __m256 rrms = _mm256_set1_ps(1.0f / std::sqrt(horizontal_sum_avx2(squares) / static_cast<float>(cols) + eps));
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      __m256 v = _mm256_mul_ps(_mm256_maskload_ps(in + c, mask), rrms);
      if (gamma) v = _mm256_mul_ps(v, _mm256_maskload_ps(gamma + c, mask));
      _mm256_maskstore_ps(y + r * cols + c, mask, v);
    }
  }
}

void softmax_avx2(const float* x, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    __m256 max = _mm256_set1_ps(-INFINITY);
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      max = _mm256_max_ps(max, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(in + c, mask),
                                                _mm256_castsi256_ps(mask)));
    }
    const __m256 vmax = _mm256_set1_ps(horizontal_max_avx2(max));
    __m256 sum = _mm256_setzero_ps();
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      const __m256 e = _mm256_and_ps(exp_avx2(_mm256_sub_ps(_mm256_maskload_ps(in + c, mask), vmax)),
                                     _mm256_castsi256_ps(mask));
      _mm256_maskstore_ps(out + c, mask, e);
      sum = _mm256_add_ps(sum, e);
    }
    const __m256 inverse = _mm256_set1_ps(1.0f / horizontal_sum_avx2(sum));
    for (int64_t c = 0; c < cols; c += 8) {
      const __m256i mask = lanes_below_avx2(cols - c);
      _mm256_maskstore_ps(out + c, mask, _mm256_mul_ps(_mm256_maskload_ps(out + c, mask), inverse));
    }
  }
}

void group_norm_avx2(const float* x, const float* gamma, const float* beta, float eps, bool silu, float* y,
                     int64_t batch, int64_t channels, int64_t spatial, int64_t groups) {
  const int64_t per_group = channels / groups;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* in = x + (b * channels + g * per_group) * spatial;
      float mean, rstd;
      moments_avx2(in, per_group * spatial, eps, &mean, &rstd);
      for (int64_t c = 0; c < per_group; ++c) {
        const int64_t channel = g * per_group + c;
        const __m256 scale = _mm256_set1_ps(rstd * (gamma ? gamma[channel] : 1.0f));
        const __m256 shift = _mm256_set1_ps(beta ? beta[channel] : 0.0f);
        float* out = y + (b * channels + channel) * spatial;
        for (int64_t i = 0; i < spatial; i += 8) {
          const __m256i mask = lanes_below_avx2(spatial - i);
          __m256 v = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_maskload_ps(in + c * spatial + i, mask), _mm256_set1_ps(mean)),
                                     scale, shift);
          if (silu) v = activate_avx2(Activation::Silu, v);
          _mm256_maskstore_ps(out + i, mask, v);
        }
      }
    }
  }
}

}  // namespace

const RowKernels kRowAvx2 = {layer_norm_avx2, rms_norm_avx2, softmax_avx2, group_norm_avx2};

}  // namespace tiledraw::kernels
