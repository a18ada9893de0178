#pragma once

#include <cstdint>

#include "kernels/layout/layout.h"
#include "tiledraw/cpu.h"

// A convolution's im2col rows (im2col_rows' layout) quantized to 8-bit S as
// they are gathered, one scale per output pixel, bit for bit what
// quantize_rows gives on im2col_rows' floats, without storing those floats.
// Every variant gives the same bits; names state element types and ISA.
namespace tiledraw::kernels {

// Rows of `stride` bytes; each row's bytes past the window are zeroed, and
// sums[i] = sum_k q[i, k] (for kernels that multiply unsigned bytes).
struct QuantizedRows {
  int8_t* q;
  int64_t stride;
  float* scales;
  int32_t* sums;
};

// absmax [batch, height, width]: each input pixel's largest |value| over its
// channels, NaN where one of them is NaN or Inf. A row's scale is the maximum
// over its window, which the vector variant reads from here.
void conv_pixel_absmax(const float* x, const ConvGeometry& g, float* absmax);

using Im2colQuantizeFn = void (*)(const float* x, const ConvGeometry& g, int64_t first, int64_t count,
                                  const float* pixel_absmax, const QuantizedRows& out);

// A pixel at a time: im2col_rows, then the row kernel of the same ISA.
void f32_qs8_im2col_quantize__scalar(const float* x, const ConvGeometry& g, int64_t first, int64_t count,
                                     const float* pixel_absmax, const QuantizedRows& out);
void f32_qs8_im2col_quantize__avx2(const float* x, const ConvGeometry& g, int64_t first, int64_t count,
                                   const float* pixel_absmax, const QuantizedRows& out);
// Sixteen pixels at a time, one per vector lane: the window's values read
// straight from the NCHW input (contiguous loads when the sixteen share an
// output row, gathers otherwise), then transposed in registers, sixteen bytes
// of k per pixel. The scalar variants ignore pixel_absmax.
void f32_qs8_im2col_quantize__avx512(const float* x, const ConvGeometry& g, int64_t first, int64_t count,
                                     const float* pixel_absmax, const QuantizedRows& out);

Im2colQuantizeFn im2col_quantize_kernel(IsaLevel level);

}  // namespace tiledraw::kernels
