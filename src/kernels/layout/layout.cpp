#include "kernels/layout/layout.h"

#include <omp.h>

#include <algorithm>
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

void timestep_embedding(const float* timesteps, float* embedding, int64_t batch, int64_t dim, int64_t frequency_shift) {
  const int64_t half = dim / 2;
  for (int64_t b = 0; b < batch; ++b) {
    float* out = embedding + b * dim;
    for (int64_t i = 0; i < half; ++i) {
      // In float, as the reference computes it in float32.
      const float freq = std::exp(-std::log(10000.0f) * static_cast<float>(i) / static_cast<float>(half - frequency_shift));
      const float arg = timesteps[b] * freq;
      out[i] = std::cos(arg);
      out[half + i] = std::sin(arg);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
  }
}

void upsample_nearest_2x(const float* x, float* y, int64_t planes, int64_t height, int64_t width) {
#pragma omp parallel for schedule(static) if (planes * height * width > 65536)
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t r = 0; r < height; ++r) {
      const float* in = x + (p * height + r) * width;
      float* out = y + (p * 2 * height + 2 * r) * 2 * width;
      for (int64_t c = 0; c < width; ++c) out[2 * c] = out[2 * c + 1] = in[c];
      std::copy_n(out, 2 * width, out + 2 * width);
    }
  }
}

void im2col_rows(const float* x, const ConvGeometry& g, int64_t first, int64_t count, float* rows) {
  const int64_t k = g.kernel, window = k * k, row_length = g.channels * window;
  // NCHW input: a pixel's window spans every channel plane. Sixteen channels
  // at a time, the planes' few input rows stay in cache across the block's
  // pixels, and each pixel gets a contiguous run of its row.
  constexpr int64_t kChannels = 16;
  const int parts = count * row_length > 65536 ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(parts)
  for (int part = 0; part < parts; ++part) {
    const int64_t begin = count * part / parts, end = count * (part + 1) / parts;
    for (int64_t c0 = 0; c0 < g.channels; c0 += kChannels) {
      const int64_t c1 = std::min(g.channels, c0 + kChannels);
      for (int64_t i = begin; i < end; ++i) {
        const int64_t pixel = first + i;
        const int64_t b = pixel / (g.out_height * g.out_width);
        const int64_t oy = pixel / g.out_width % g.out_height, ox = pixel % g.out_width;
        float* out = rows + i * row_length + c0 * window;
        const int64_t top = oy * g.stride - g.padding, left = ox * g.stride - g.padding;
        const bool inside = top >= 0 && top + k <= g.height && left >= 0 && left + k <= g.width;
        for (int64_t c = c0; c < c1; ++c) {
          const float* plane = x + (b * g.channels + c) * g.height * g.width;
          if (inside && k == 3) {  // the VAE's convolutions, away from the border: no checks, unrolled
            const float* w = plane + top * g.width + left;
            out[0] = w[0], out[1] = w[1], out[2] = w[2];
            out[3] = w[g.width], out[4] = w[g.width + 1], out[5] = w[g.width + 2];
            out[6] = w[2 * g.width], out[7] = w[2 * g.width + 1], out[8] = w[2 * g.width + 2];
            out += 9;
            continue;
          }
          for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t iy = top + ky;
            for (int64_t kx = 0; kx < k; ++kx) {
              const int64_t ix = left + kx;
              *out++ = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width ? plane[iy * g.width + ix] : 0.0f;
            }
          }
        }
      }
    }
  }
}

void f32_transpose__scalar(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out, int64_t ld_out) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) out[c * ld_out + r] = in[r * ld_in + c];
  }
}

TransposeFn transpose_kernel(IsaLevel level) {
  return for_isa(level, f32_transpose__scalar, f32_transpose__scalar, f32_transpose__avx512);
}

}  // namespace tiledraw::kernels
