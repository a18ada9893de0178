#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/elementwise/elementwise.h"
#include "models/weights.h"
#include "runtime/graph.h"

// CLIP's text transformer, the text encoder of Stable Diffusion 1.x (OpenAI
// CLIP ViT-L/14: width 768, 12 layers, QuickGELU) and 2.x (OpenCLIP ViT-H/14:
// width 1024, 24 layers, GELU): token and position embeddings, pre-norm blocks
// with causal self-attention, a final layer norm.
namespace tiledraw::models {

struct ClipTextConfig {
  int64_t width = 0;
  int64_t layers = 0;  // transformer layers the model has (diffusers' SD 2.x text_encoder/ stores 23 of 24)
  int64_t heads = 0;
  int64_t vocabulary = 0;
  int64_t positions = 0;  // rows of the position table (77)
  kernels::Unary activation = kernels::Unary::QuickGelu;
  float layer_norm_eps = 1e-5f;
  int64_t projection = 0;  // columns of the pooled output's projection; 0 without one
};

class ClipTextEncoder {
 public:
  // Reads Hugging Face's CLIPTextModel names (as diffusers' text_encoder/ and,
  // under "cond_stage_model.transformer.", SD 1.x single files store them) or
  // OpenCLIP's (SD 2.x single files, under "cond_stage_model.model."). The
  // config is the view's (a config.json beside a diffusers text_encoder/),
  // else inferred from the shapes: heads of 64, QuickGELU in Hugging Face's
  // names, GELU in OpenCLIP's.
  ClipTextEncoder(const WeightView& view, const Accelerator& accel, Precision precision = Precision::AsStored);
  const ClipTextConfig& config() const { return config_; }

  // What a graph gives: the hidden states after `layers` transformer layers,
  // through the final layer norm (SD 1.x's last layer or its clip skip, SD
  // 2.x's penultimate) or as they are (SDXL's penultimate); and, for pooling,
  // the states after every layer and the final norm as well.
  struct Outputs {
    int64_t layers = 0;
    bool final_norm = true;
    bool for_pooling = false;
    const runtime::LayerAdapters* adapters = nullptr;  // LoRA
  };
  struct Graph {
    runtime::Graph graph;
    int ids;                 // input [batch, positions]: token ids, whole numbers held as floats
    int hidden_states;       // output [batch, positions, width]
    int pooling_source = -1;  // output [batch, positions, width] when asked for: what pooled() reads
  };
  std::unique_ptr<Graph> build(int64_t batch, const Outputs& outputs) const;

  // The pooled output: for each row of `ids`, the hidden state at its EOS (the
  // position of its largest id, as CLIP takes it), times the text projection
  // where the file has one: [batch, projection or width]. `states` must be a
  // graph's pooling_source.
  std::vector<float> pooled(const float* ids, const float* states, int64_t batch) const;
  // The layers adapters may target, part by part: as loaded, and q, k and v
  // as rows of the fused projection, by Hugging Face's names.
  const std::vector<LayerPart>& layer_parts() const { return layer_parts_; }
  // The pooled output's width.
  int64_t pooled_width() const { return config_.projection ? config_.projection : config_.width; }

 private:
  struct Layer {
    const float *norm1_gamma, *norm1_beta, *norm2_gamma, *norm2_beta;
    LinearWeights qkv, out, fc1, fc2;
  };

  ClipTextConfig config_;
  WeightStore weights_;
  runtime::StoredTable token_table_{};
  const float* position_table_ = nullptr;
  std::vector<Layer> layers_;
  const float *final_gamma_ = nullptr, *final_beta_ = nullptr;
  std::vector<float> projection_;  // [projection, width], as a linear layer's weight
  std::vector<LayerPart> layer_parts_;
};

// Whether the view holds a CLIP text transformer in either layout.
bool holds_clip_text(const WeightView& view);

}  // namespace tiledraw::models
