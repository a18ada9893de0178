#pragma once

#include <cstdint>

#include "tiledraw/cpu.h"

// Ops that only move or generate data, one implementation each where there is
// no arithmetic for a vector unit to speed up (DiT's patch (un)folding, the
// sinusoidal timestep embedding, im2col); the transpose has an AVX-512 variant.
namespace tiledraw::kernels {

// image [batch, channels, height, width] -> patches [batch, (height/p)*(width/p), channels*p*p],
// each patch's values in (channel, row, column) order: the order of a Conv2d
// weight [out, channels, p, p] flattened, so that patch embedding is a linear layer.
void patchify(const float* image, float* patches, int64_t batch, int64_t channels, int64_t height, int64_t width,
              int64_t patch);

// The inverse layout of DiT's final layer: tokens [batch, (h/p)*(w/p), p*p*channels]
// with each token's values in (row, column, channel) order -> image [batch, channels, h, w].
void unpatchify(const float* tokens, float* image, int64_t batch, int64_t channels, int64_t height, int64_t width,
                int64_t patch);

// emb[b] = [cos(t freqs), sin(t freqs)] with freqs[i] = exp(-ln(10000) i / (half - shift)),
// half = dim / 2 (and a zero column when dim is odd): DiT's TimestepEmbedder with
// shift 0, diffusers' Timesteps(flip_sin_to_cos, downscale_freq_shift=1) with 1.
void timestep_embedding(const float* timesteps, float* embedding, int64_t batch, int64_t dim, int64_t frequency_shift = 0);

// x [planes, height, width] -> [planes, 2 height, 2 width], each pixel repeated 2 x 2.
void upsample_nearest_2x(const float* x, float* y, int64_t planes, int64_t height, int64_t width);

// The rows of a convolution as a matrix (im2col) for output pixels [first, first + count)
// of x [batch, channels, height, width] in (batch, row, column) order: each row
// holds the kernel x kernel window of every channel, (channel, ky, kx) order,
// zero outside the image: the order of a conv weight [out, channels, k, k] flattened.
struct ConvGeometry {
  int64_t batch, channels, height, width, kernel, stride, padding, out_height, out_width;
};
void im2col_rows(const float* x, const ConvGeometry& g, int64_t first, int64_t count, float* rows);

// out[c * ld_out + r] = in[r * ld_in + c] for r < rows, c < cols: a
// convolution's [pixels, channels] matmul output back to channel planes, and
// the UNet's NCHW <-> tokens.
using TransposeFn = void (*)(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out, int64_t ld_out);
void f32_transpose__scalar(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out, int64_t ld_out);
// Blocks of 16 x 16, transposed in registers (masked at the edges).
void f32_transpose__avx512(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out, int64_t ld_out);
TransposeFn transpose_kernel(IsaLevel level);

}  // namespace tiledraw::kernels
