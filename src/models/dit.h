#pragma once

#include <cstdint>

#include "runtime/graph.h"

// DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers"): the
// pieces of the model as graph builders over weights loaded elsewhere.
namespace tiledraw::models {

struct LinearWeights {
  const PackedWeight* weight;
  const float* bias;
};

// One DiT block with adaLN-Zero conditioning:
//   shift1, scale1, gate1, shift2, scale2, gate2 = chunk(adaLN(silu(c)), 6)
//   x = x + gate1 * proj(attention(qkv(modulate(norm(x), shift1, scale1))))
//   x = x + gate2 * fc2(gelu_tanh(fc1(modulate(norm(x), shift2, scale2))))
// with layer norms without affine (eps 1e-6), as the reference implementation.
struct DitBlockWeights {
  LinearWeights ada_ln;  // [6 width, width]
  LinearWeights qkv;     // [3 width, width]
  LinearWeights proj;    // [width, width]
  LinearWeights fc1;     // [mlp, width]
  LinearWeights fc2;     // [width, mlp]
};

// x [batch, tokens, width]; silu_c [batch, width], the conditioning after SiLU
// (computed once and shared by every block). Returns the block's output.
int dit_block(runtime::Graph& graph, int x, int silu_c, const DitBlockWeights& w, int64_t heads);

}  // namespace tiledraw::models
