#include "kernels/layout/layout.h"

#include <cmath>

namespace tiledraw::kernels {

void patchify(const float* image, float* patches, int64_t batch, int64_t channels, int64_t height, int64_t width,
              int64_t patch) {
  const int64_t rows = height / patch, cols = width / patch, dim = channels * patch * patch;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        float* out = patches + ((b * rows + r) * cols + c) * dim;
        for (int64_t ch = 0; ch < channels; ++ch) {
          for (int64_t y = 0; y < patch; ++y) {
            for (int64_t x = 0; x < patch; ++x) {
              *out++ = image[((b * channels + ch) * height + r * patch + y) * width + c * patch + x];
            }
          }
        }
      }
    }
  }
}

void unpatchify(const float* tokens, float* image, int64_t batch, int64_t channels, int64_t height, int64_t width,
                int64_t patch) {
  const int64_t rows = height / patch, cols = width / patch;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const float* in = tokens + ((b * rows + r) * cols + c) * patch * patch * channels;
        for (int64_t y = 0; y < patch; ++y) {
          for (int64_t x = 0; x < patch; ++x) {
            for (int64_t ch = 0; ch < channels; ++ch) {
              image[((b * channels + ch) * height + r * patch + y) * width + c * patch + x] = *in++;
            }
          }
        }
      }
    }
  }
}

void timestep_embedding(const float* timesteps, float* embedding, int64_t batch, int64_t dim) {
  const int64_t half = dim / 2;
  for (int64_t b = 0; b < batch; ++b) {
    float* out = embedding + b * dim;
    for (int64_t i = 0; i < half; ++i) {
      // In float, as the reference computes it in float32.
      const float freq = std::exp(-std::log(10000.0f) * static_cast<float>(i) / static_cast<float>(half));
      const float arg = timesteps[b] * freq;
      out[i] = std::cos(arg);
      out[half + i] = std::sin(arg);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
  }
}

}  // namespace tiledraw::kernels
