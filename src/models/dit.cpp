#include "models/dit.h"

namespace tiledraw::models {

int dit_block(runtime::Graph& g, int x, int silu_c, const DitBlockWeights& w, int64_t heads) {
  constexpr float kEps = 1e-6f;
  const std::vector<int> mod = g.chunk(g.linear(silu_c, *w.ada_ln.weight, w.ada_ln.bias), 6);
  const int shift1 = mod[0], scale1 = mod[1], gate1 = mod[2], shift2 = mod[3], scale2 = mod[4], gate2 = mod[5];

  const int h1 = g.modulated_layer_norm(x, scale1, shift1, kEps);
  const int attended = g.attention(g.linear(h1, *w.qkv.weight, w.qkv.bias), heads);
  x = g.gated_residual(x, g.linear(attended, *w.proj.weight, w.proj.bias), gate1);

  const int h2 = g.modulated_layer_norm(x, scale2, shift2, kEps);
  const int hidden = g.linear(h2, *w.fc1.weight, w.fc1.bias, Activation::GeluTanh);
  return g.gated_residual(x, g.linear(hidden, *w.fc2.weight, w.fc2.bias), gate2);
}

}  // namespace tiledraw::models
