#pragma once

#include <cstdint>

// Ops that only move or generate data, one implementation each (there is no
// arithmetic for a vector unit to speed up): DiT's patch (un)folding, the
// sinusoidal timestep embedding and the class-embedding lookup.
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

// emb[b] = [cos(t freqs), sin(t freqs)] with freqs[i] = exp(-ln(10000) i / half), half = dim / 2
// (and a zero column when dim is odd), as DiT's TimestepEmbedder.
void timestep_embedding(const float* timesteps, float* embedding, int64_t batch, int64_t dim);

}  // namespace tiledraw::kernels
