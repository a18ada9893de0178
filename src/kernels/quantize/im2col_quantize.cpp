#include "kernels/quantize/im2col_quantize.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/quantize/quantize_rows.h"

namespace tiledraw::kernels {
namespace {

void im2col_then_quantize(const float* x, const ConvGeometry& g, int64_t first, int64_t count, const QuantizedRows& out,
                          QuantizeRowsFn quantize_row) {
  constexpr int64_t kPixels = 16;  // im2col'd floats per pass, bounding the scratch
  const int64_t k = g.channels * g.kernel * g.kernel;
  thread_local std::vector<float> rows;
  rows.resize(static_cast<size_t>(kPixels * k));
  for (int64_t i0 = 0; i0 < count; i0 += kPixels) {
    const int64_t pixels = count - i0 < kPixels ? count - i0 : kPixels;
    im2col_rows(x, g, first + i0, pixels, rows.data());
    for (int64_t i = i0; i < i0 + pixels; ++i) {
      out.sums[i] = quantize_padded_row(quantize_row, rows.data() + (i - i0) * k, static_cast<size_t>(k),
                                        static_cast<size_t>(out.stride), out.q + i * out.stride, out.scales + i);
    }
  }
}

}  // namespace

void conv_pixel_absmax(const float* x, const ConvGeometry& g, float* absmax) {
  const int64_t plane = g.height * g.width;
  const int parts = plane * g.channels > 65536 ? omp_get_max_threads() : 1;
  for (int64_t b = 0; b < g.batch; ++b) {
    float* image_absmax = absmax + b * plane;
#pragma omp parallel for schedule(static) num_threads(parts)
    for (int part = 0; part < parts; ++part) {
      const int64_t begin = plane * part / parts, end = plane * (part + 1) / parts;
      std::fill(image_absmax + begin, image_absmax + end, 0.0f);
      for (int64_t c = 0; c < g.channels; ++c) {
        const float* channel = x + (b * g.channels + c) * plane;
        for (int64_t i = begin; i < end; ++i) {
          const float a = std::fabs(channel[i]);
          // NaN stays once there (no comparison with it is true); Inf wins every comparison.
          image_absmax[i] = a > image_absmax[i] || a != a ? a : image_absmax[i];
        }
      }
    }
  }
}

void f32_qs8_im2col_quantize__scalar(const float* x, const ConvGeometry& g, int64_t first, int64_t count,
                                     const float*, const QuantizedRows& out) {
  im2col_then_quantize(x, g, first, count, out, f32_qs8_quantize_rows__scalar);
}

void f32_qs8_im2col_quantize__avx2(const float* x, const ConvGeometry& g, int64_t first, int64_t count,
                                   const float*, const QuantizedRows& out) {
  im2col_then_quantize(x, g, first, count, out, f32_qs8_quantize_rows__avx2);
}

Im2colQuantizeFn im2col_quantize_kernel(IsaLevel level) {
  return for_isa(level, f32_qs8_im2col_quantize__scalar, f32_qs8_im2col_quantize__avx2,
                 f32_qs8_im2col_quantize__avx512);
}

}  // namespace tiledraw::kernels
