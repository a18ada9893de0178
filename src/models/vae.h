#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/weights.h"
#include "runtime/graph.h"

// The decoder of Stable Diffusion's VAE (diffusers' AutoencoderKL layout, which
// DiT uses): latents [batch, 4, h, w] to an image [batch, 3, 8h, 8w] in [-1, 1].
namespace tiledraw::models {

struct VaeConfig {
  int64_t latent_channels = 0;
  int64_t out_channels = 0;
  std::vector<int64_t> block_out_channels;  // from the image side, as diffusers lists them
  int64_t layers_per_block = 0;              // resnets per up block, less one
  int64_t groups = 32;
  // The diffusion model works on (latents - shift) * scaling; 0 scaling where
  // the config does not say (the model's latent format then decides).
  float scaling_factor = 0.0f, shift_factor = 0.0f;
  int64_t factor() const { return int64_t{1} << (block_out_channels.size() - 1); }  // image pixels per latent
};

class VaeDecoder {
 public:
  // Reads diffusers' names or the original (LDM) ones under the view's prefix.
  // The config comes from the view's (the file's "config" metadata or a
  // diffusers config.json beside it), else from the tensor shapes (32 groups).
  VaeDecoder(const WeightView& view, const Accelerator& accel, Precision precision = Precision::AsStored);
  const VaeConfig& config() const { return config_; }

  struct Graph {
    runtime::Graph graph;
    int latents;  // input [batch, latent_channels, h, w], not scaled: AutoencoderKL.decode(z)
    int image;    // output [batch, out_channels, factor h, factor w]
  };
  std::unique_ptr<Graph> build(int64_t batch, int64_t height, int64_t width) const;

 private:
  struct Norm {
    const float* gamma;
    const float* beta;
    int64_t channels;  // values in gamma and in beta
    std::string name;
  };
  struct Resnet {
    Norm norm1, norm2;
    LinearWeights conv1, conv2, shortcut;  // shortcut only when the channels change
  };
  struct Attention {
    Norm norm;
    LinearWeights qkv, out;
  };
  Norm norm(const std::string& prefix);
  // Group norm of x by `n`, whose size must match x's channels (the file's shapes are not trusted).
  int group_norm(runtime::Graph& g, int x, const Norm& n, bool silu) const;
  Resnet resnet(const std::string& prefix);
  int resnet_graph(runtime::Graph& g, int x, const Resnet& r) const;
  int attention_graph(runtime::Graph& g, int x, const Attention& a) const;

  VaeConfig config_;
  WeightStore weights_;
  LinearWeights post_quant_conv_, conv_in_, conv_out_;
  Resnet mid_first_, mid_second_;
  Attention mid_attention_;
  std::vector<std::vector<Resnet>> up_resnets_;
  std::vector<LinearWeights> upsamplers_;  // one per up block but the last
  Norm norm_out_;
};

// Whether the view holds an AutoencoderKL decoder, in either layout; and
// whether its names are the original (LDM) ones.
bool holds_vae_decoder(const WeightView& view);
bool vae_in_original_layout(const WeightView& view);

}  // namespace tiledraw::models
