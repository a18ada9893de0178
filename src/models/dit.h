#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "models/weights.h"
#include "runtime/graph.h"
#include "tiledraw/memory.h"
#include "tiledraw/safetensors.h"

// DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers"): the
// model's pieces as graph builders, and a loader for checkpoints in the
// original repository's layout or diffusers' DiTTransformer2DModel layout
// (float or 8-bit S).
namespace tiledraw::models {

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

// x [batch, tokens, width]; silu_c [batch, width], the conditioning after SiLU.
// `mlp_norm_eps` is the second norm's epsilon (diffusers uses its norm_eps there).
int dit_block(runtime::Graph& graph, int x, int silu_c, const DitBlockWeights& w, int64_t heads,
              float mlp_norm_eps = 1e-6f);

enum class DitLayout { Original, Diffusers };

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
  DitLayout layout = DitLayout::Original;
  int64_t frequency_shift = 0;  // timestep frequencies 10000^(-i / (128 - shift)); diffusers: 1
  float mlp_norm_eps = 1e-6f;   // diffusers: its config's norm_eps
  int64_t out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
};

// DiT's fixed 2-D sin-cos position embedding for a grid of rows x cols tokens:
// for token (r, c), the first half of the width encodes c, the second half r,
// each as [sin(p w), cos(p w)] with w[i] = 10000^(-i / (width / 4)). At a grid
// other than the trained `base` one, positions are scaled to span the trained
// grid (p = c * base / cols), as diffusers does, so that no token sits outside
// the positions the model saw.
std::vector<float> dit_position_embedding(int64_t width, int64_t rows, int64_t cols, int64_t base_rows = 0,
                                          int64_t base_cols = 0);

// Class-conditional DiT behind the diffusion-model interface. Its quirks stay
// here: the null class (the last row of the class table) is the unconditional
// branch, guidance mixes only the first three channels (DiT's
// forward_with_cfg), and a learned-sigma model outputs a variance too.
class DitModel : public DiffusionModel {
 public:
  // Reads the config (the view's config, else inferred from tensor shapes) and
  // the weights of either layout, found under the view's prefix; 8-bit S weights
  // are packed for `accel`. The file must stay open while the model lives:
  // packed weights remember their source.
  DitModel(const WeightView& view, const Accelerator& accel, Precision precision = Precision::AsStored,
           sampling::NoiseSchedule schedule = sampling::NoiseSchedule::dit());
  const DitConfig& config() const { return config_; }
  int64_t null_class() const { return config_.num_classes; }
  // The class names in the file's "class_names" metadata, or none.
  const std::vector<std::string>& class_names() const { return class_names_; }

  std::string description() const override;
  Prediction prediction() const override { return Prediction::Epsilon; }
  bool learned_variance() const override { return config_.learn_sigma; }
  const sampling::NoiseSchedule& noise_schedule() const override { return schedule_; }
  // 4 channels are the SD VAE's latents (DiT-XL/2 and the like); 1 or 3 are pixels.
  LatentFormat latent_format() const override;
  int64_t latent_multiple() const override { return config_.patch_size; }
  int64_t trained_latent_size() const override { return config_.input_size; }
  // Inputs: latents, timestep, class labels; output [batch, out_channels, h, w].
  std::unique_ptr<ModelGraph> build(const GraphShape& shape) const override;
  void guide(float* cond, const float* uncond, int64_t images, int64_t plane, double scale) const override;
  Sampler default_sampler() const override { return Sampler::Ddim; }
  int default_steps() const override { return 50; }
  double default_cfg_scale() const override { return 4.0; }

 private:
  // diffusers gives every block its own timestep and class embedders; blocks
  // whose embedders are the same bytes share one conditioning.
  struct Conditioning {
    LinearWeights t_mlp0, t_mlp2;
    const float* class_table = nullptr;
  };
  Conditioning conditioning(int64_t block);
  int conditioning_graph(runtime::Graph& g, const Conditioning& c, int timesteps, int classes) const;

  const float* position_table(int64_t rows, int64_t cols) const;

  DitConfig config_;
  WeightStore weights_;
  sampling::NoiseSchedule schedule_;
  std::vector<std::string> class_names_;
  LinearWeights patch_embed_, final_ada_ln_, final_linear_;
  std::vector<DitBlockWeights> blocks_;
  std::vector<Conditioning> conditionings_;
  std::vector<size_t> block_conditioning_;  // index into conditionings_ per block
  mutable std::mutex positions_mutex_;
  struct PositionTable {
    MemoryReservation reservation;
    std::vector<float> values;
  };
  mutable std::map<std::pair<int64_t, int64_t>, PositionTable> positions_;
};

// The layout a view's DiT names follow (by its patch embedding), if any.
std::optional<DitLayout> dit_layout(const WeightView& view);
// Whether the view holds a DiT (the loader then names anything missing), and its number of blocks.
bool holds_dit(const WeightView& view);
int64_t dit_depth(const WeightView& view);

}  // namespace tiledraw::models
