#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/graph.h"
#include "tiledraw/safetensors.h"

// DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers"): the
// model's pieces as graph builders, and a loader for checkpoints in the
// original repository's layout (float or 8-bit S).
namespace tiledraw::models {

// A linear layer's weights: 8-bit S through the accelerator, or float.
struct LinearWeights {
  const PackedWeight* weight = nullptr;
  runtime::FloatWeight float_weight{};
  const float* bias = nullptr;
};

int linear(runtime::Graph& graph, int x, const LinearWeights& w, Activation activation = Activation::None);

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

struct DitConfig {
  int64_t input_size = 0;  // latent height and width it was trained at
  int64_t patch_size = 0;
  int64_t in_channels = 0;
  int64_t hidden_size = 0;
  int64_t depth = 0;
  int64_t num_heads = 0;
  int64_t mlp_hidden = 0;
  int64_t num_classes = 0;  // without the extra "null" class used for guidance
  bool learn_sigma = false;
  int64_t out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
};

// DiT's fixed 2-D sin-cos position embedding for a grid of rows x cols tokens:
// for token (r, c), the first half of the width encodes c, the second half r,
// each as [sin(p w), cos(p w)] with w[i] = 10000^(-i / (width / 4)).
std::vector<float> dit_position_embedding(int64_t width, int64_t rows, int64_t cols);

class DitModel {
 public:
  // Reads the config (the file's "config" metadata, else inferred from tensor
  // shapes) and the weights; 8-bit S weights are packed for `accel`. The file
  // must stay open while the model lives: packed weights remember their source.
  DitModel(const SafetensorsFile& file, const Accelerator& accel);
  const DitConfig& config() const { return config_; }

  struct Graph {
    runtime::Graph graph;
    int latents, timesteps, classes;  // inputs: [batch, channels, h, w], [batch], [batch] (ids as floats)
    int output;                       // [batch, out_channels, h, w]: noise (and variance when learned)
  };
  // The forward pass for `batch` latents of height x width (multiples of the patch size).
  std::unique_ptr<Graph> build(int64_t batch, int64_t height, int64_t width) const;

 private:
  const float* floats(const std::string& name);
  LinearWeights linear_weights(const std::string& prefix);

  const float* position_table(int64_t rows, int64_t cols) const;

  const SafetensorsFile& file_;
  const Accelerator& accel_;
  DitConfig config_;
  std::map<std::string, std::vector<float>> floats_;  // biases, tables, float weights and 8-bit S scales
  std::vector<std::unique_ptr<PackedWeight>> packed_;
  LinearWeights patch_embed_, t_mlp0_, t_mlp2_, final_ada_ln_, final_linear_;
  std::vector<DitBlockWeights> blocks_;
  const float* class_table_ = nullptr;
  mutable std::mutex positions_mutex_;
  mutable std::map<std::pair<int64_t, int64_t>, std::vector<float>> positions_;
};

}  // namespace tiledraw::models
