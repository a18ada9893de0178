#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/weights.h"
#include "runtime/graph.h"

// Stable Diffusion's VAE (diffusers' AutoencoderKL layout, which DiT uses, or
// the original LDM names): the decoder, latents [batch, 4, h, w] to an image
// [batch, 3, 8h, 8w] in [-1, 1], and the encoder, the way back (img2img).
namespace tiledraw::models {

struct VaeConfig {
  int64_t latent_channels = 0;
  int64_t in_channels = 0;   // image channels the encoder reads (0 in a decoder's config)
  int64_t out_channels = 0;  // image channels the decoder writes (0 in an encoder's config)
  std::vector<int64_t> block_out_channels;  // from the image side, as diffusers lists them
  int64_t layers_per_block = 0;              // resnets per down block; per up block, less one
  int64_t groups = 32;
  // The diffusion model works on (latents - shift) * scaling; 0 scaling where
  // the config does not say (the model's latent format then decides).
  float scaling_factor = 0.0f, shift_factor = 0.0f;
  int64_t factor() const { return int64_t{1} << (block_out_channels.size() - 1); }  // image pixels per latent
};

// The layers both halves are made of, loaded from one store (canonical names
// are diffusers'): group norms, resnets and the mid block's single-head
// attention, and their graphs. Every graph checks a layer's channels against
// its input (the file's shapes are not trusted).
class VaeLayers {
 public:
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

  VaeLayers(const WeightView& view, const Accelerator& accel, Precision precision, const std::string& kind,
            const std::string& expected, int64_t groups);
  WeightStore& weights() { return weights_; }
  const std::string& path() const { return weights_.path(); }

  Norm norm(const std::string& prefix);
  Resnet resnet(const std::string& prefix);  // prefix ends with a dot: "decoder.mid_block.resnets.0."
  Attention attention(const std::string& prefix);

  int group_norm(runtime::Graph& g, int x, const Norm& n, bool silu) const;
  int resnet(runtime::Graph& g, int x, const Resnet& r) const;
  int attention(runtime::Graph& g, int x, const Attention& a) const;

 private:
  WeightStore weights_;
  int64_t groups_;
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
  VaeConfig config_;
  VaeLayers layers_;
  LinearWeights post_quant_conv_, conv_in_, conv_out_;
  VaeLayers::Resnet mid_first_, mid_second_;
  VaeLayers::Attention mid_attention_;
  std::vector<std::vector<VaeLayers::Resnet>> up_resnets_;
  std::vector<LinearWeights> upsamplers_;  // one per up block but the last
  VaeLayers::Norm norm_out_;
};

class VaeEncoder {
 public:
  // The same layouts and config sources as the decoder.
  VaeEncoder(const WeightView& view, const Accelerator& accel, Precision precision = Precision::AsStored);
  const VaeConfig& config() const { return config_; }

  struct Graph {
    runtime::Graph graph;
    int image;  // input [batch, in_channels, H, W] in [-1, 1], H and W multiples of factor()
    int mean;   // output [batch, latent_channels, H / factor, W / factor]: the posterior mean, not scaled
  };
  std::unique_ptr<Graph> build(int64_t batch, int64_t height, int64_t width) const;

 private:
  VaeConfig config_;
  VaeLayers layers_;
  LinearWeights conv_in_, conv_out_, quant_conv_mean_;
  std::vector<std::vector<VaeLayers::Resnet>> down_resnets_;
  std::vector<LinearWeights> downsamplers_;  // one per down block but the last
  VaeLayers::Resnet mid_first_, mid_second_;
  VaeLayers::Attention mid_attention_;
  VaeLayers::Norm norm_out_;
};

// Whether the view holds an AutoencoderKL decoder (encoder), in either layout;
// and whether its names are the original (LDM) ones.
bool holds_vae_decoder(const WeightView& view);
bool holds_vae_encoder(const WeightView& view);
bool vae_in_original_layout(const WeightView& view);

}  // namespace tiledraw::models
