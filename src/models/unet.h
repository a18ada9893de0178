#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/weights.h"
#include "runtime/graph.h"
#include "sampling/schedule.h"

// Stable Diffusion 1.x, 2.x and XL's UNet (diffusers' UNet2DConditionModel):
// resnets conditioned on the timestep (and in SDXL on the pooled text and the
// image sizes too), spatial transformers attending to the text context, down-
// and up-sampling with skip connections. Read in diffusers' names or the
// original (LDM) single-file ones, float or 8-bit S.
namespace tiledraw::models {

enum class UNetLayout { Diffusers, Original };

// What the graph is built from, per level (a resolution: a down block and the
// up block that mirrors it). Lists indexed by level run from the full
// resolution down, as diffusers' down blocks do; up block i is level
// levels() - 1 - i.
struct UNetConfig {
  UNetLayout layout = UNetLayout::Diffusers;
  int64_t in_channels = 4;  // 9 for the inpainting UNet
  int64_t out_channels = 4;
  std::vector<int64_t> block_out_channels;
  int64_t layers_per_block = 2;      // resnets per down block; up blocks have one more
  std::vector<bool> down_attention;  // CrossAttnDownBlock2D (else DownBlock2D)
  std::vector<bool> up_attention;    // by level: its up block is a CrossAttnUpBlock2D
  std::vector<int64_t> heads;                 // attention heads per level; the mid block uses the last
  std::vector<int64_t> transformer_layers;    // transformer blocks per spatial transformer, per level
  int64_t cross_attention_dim = 768;          // the text context's width
  bool linear_projection = false;             // proj_in/proj_out linear (SD 2.x) or 1x1 convolutions (SD 1.x)
  int64_t norm_groups = 32;
  float norm_eps = 1e-5f;                     // resnets' and the output's group norms
  int64_t frequency_shift = 0;                // timestep frequencies 10000^(-i / (half - shift))
  // SDXL's added embedding (diffusers' addition_embed_type "text_time"): the
  // pooled text vector and six sizes, each size a sinusoid this wide, through
  // add_embedding into the time embedding. 0 without one.
  int64_t addition_time_embed_dim = 0;
  int64_t addition_input_dim = 0;  // projection_class_embeddings_input_dim: pooled width + 6 sizes' sinusoids
  int64_t pooled_text_dim() const { return addition_input_dim - 6 * addition_time_embed_dim; }
  int64_t time_embedding_dim() const { return 4 * block_out_channels.front(); }
  int64_t levels() const { return static_cast<int64_t>(block_out_channels.size()); }
};

// The config a view's UNet has: its diffusers config (the view's: "config"
// metadata or a config.json beside the file) where it says, else inferred from
// the tensor shapes (SD 2.x, told by a context of width 1024 or linear
// projections, has heads of size 64; SD 1.x has 8 heads). Reads names and
// shapes only, so family detection can use it (in_channels,
// cross_attention_dim, linear_projection). Throws when the view holds no UNet
// or one that is not consistent.
UNetConfig read_unet_config(const WeightView& view);

// The layout of a view's UNet names, if it holds one.
std::optional<UNetLayout> unet_layout(const WeightView& view);
// Whether the view holds a Stable Diffusion 1.x/2.x UNet, in either layout
// (not SDXL's, which has an added embedding of sizes).
bool holds_sd_unet(const WeightView& view);

// What the family loader decides for a UNet: the defaults are SD 1.x's.
struct UNetOptions {
  Prediction prediction = Prediction::Epsilon;
  sampling::NoiseSchedule schedule = sampling::NoiseSchedule::stable_diffusion();
  LatentFormat latent{4, 8, 0.18215, 0.0};
  int64_t trained_latent_size = 64;  // 64 for 512-pixel models, 96 for 768
  std::string description;           // empty: one made from the config
  double default_cfg_scale = 7.0;
};

class UNetModel : public DiffusionModel {
 public:
  // Reads the config (read_unet_config) and every weight under the view's
  // prefix, checking each tensor's shape against the config first; 8-bit S
  // weights are packed for `accel`. The file must stay open while the model lives.
  UNetModel(const WeightView& view, const Accelerator& accel, Precision precision, UNetOptions options);
  const UNetConfig& config() const { return config_; }

  std::string description() const override;
  Prediction prediction() const override { return options_.prediction; }
  const sampling::NoiseSchedule& noise_schedule() const override { return options_.schedule; }
  LatentFormat latent_format() const override { return options_.latent; }
  int64_t latent_multiple() const override { return int64_t{1} << (config_.levels() - 1); }
  int64_t trained_latent_size() const override { return options_.trained_latent_size; }
  double default_cfg_scale() const override { return options_.default_cfg_scale; }
  // Inputs: latents [batch, in_channels, h, w], timestep [batch], text context
  // [batch, tokens, cross_attention_dim], and for SDXL the pooled text
  // [batch, pooled_text_dim()] and sizes [batch, 6]; output [batch,
  // out_channels, h, w].
  std::unique_ptr<ModelGraph> build(const GraphShape& shape) const override;
  const std::vector<LayerPart>& layer_parts() const override { return layer_parts_; }

 private:
  struct Norm {
    const float* gamma = nullptr;
    const float* beta = nullptr;
  };
  struct Resnet {
    Norm norm1, norm2;
    LinearWeights conv1, time_projection, conv2;
    std::optional<LinearWeights> shortcut;  // a 1x1 convolution where the channels change
  };
  struct TransformerBlock {
    Norm norm1, norm2, norm3;
    LinearWeights self_qkv, self_out, cross_q, cross_kv, cross_out, feed_forward_in, feed_forward_out;
  };
  struct SpatialTransformer {
    Norm norm;
    LinearWeights proj_in, proj_out;
    std::vector<TransformerBlock> blocks;
    int64_t heads = 0;
  };
  // A down or up block: resnets, each followed by a transformer in the
  // cross-attention blocks, then its down- or up-sampler, if any.
  struct Block {
    std::vector<Resnet> resnets;
    std::vector<SpatialTransformer> transformers;
    std::optional<LinearWeights> sampler;
  };

  // The tensor of a canonical name, or an error naming it, when its shape is not `shape`.
  void require_shape(const std::string& name, const std::vector<int64_t>& shape) const;
  // Each reads its tensors after checking their shapes against the config.
  Norm norm(const std::string& prefix, int64_t channels);
  LinearWeights layer(const std::string& prefix, const std::vector<int64_t>& weight_shape,
                      WeightStore::Bias bias = WeightStore::Bias::Required);
  Resnet resnet(const std::string& prefix, int64_t in_channels, int64_t out_channels);
  SpatialTransformer transformer(const std::string& prefix, int64_t channels, int64_t heads, int64_t depth);

  int resnet_graph(runtime::Graph& g, int x, int silu_time, const Resnet& r) const;
  int transformer_graph(runtime::Graph& g, int x, int context, const SpatialTransformer& t) const;

  UNetConfig config_;
  UNetOptions options_;
  WeightStore weights_;
  std::vector<LayerPart> layer_parts_;  // by the names of either layout
  LinearWeights conv_in_, time_linear_1_, time_linear_2_, conv_out_;
  std::optional<LinearWeights> added_linear_1_, added_linear_2_;
  std::vector<Block> down_, up_;  // up_ in diffusers' order: deepest first
  Resnet mid_first_, mid_second_;
  SpatialTransformer mid_transformer_;
  Norm norm_out_;
};

}  // namespace tiledraw::models
