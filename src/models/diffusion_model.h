#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/weights.h"
#include "runtime/graph.h"
#include "sampling/schedule.h"
#include "tiledraw/sampling.h"

// The one interface every diffusion model family implements (DiT today; the
// Stable Diffusion UNets and flow transformers next). The pipeline, the
// samplers and the command line see a model only through it: what it reads,
// what it predicts, its noise schedule and its latents.
namespace tiledraw::models {

// What a model's graph inputs hold, by role.
enum class InputRole {
  Latents,      // [batch, channels, h, w], scaled to the model's input at this sigma
  Timestep,     // [batch]: the training timestep (possibly fractional), or flow's sigma times its scale
  ClassLabels,  // [batch]: class ids as floats
  TextContext,  // [batch, tokens, width], tokens a multiple of 77
  PooledText,   // [batch, width]
  ExtraVector,  // [batch, n]: further conditioning (SDXL's size and crop values)
};
// The names a tensor of this role goes by in `forward`'s inputs: tiledraw's
// short one first, diffusers' last ("x", "sample", "hidden_states").
std::vector<std::string> input_names(InputRole role);

enum class Prediction {
  Epsilon,       // the noise
  V,             // v = alpha noise - sigma x0, for a variance-preserving x
  FlowVelocity,  // noise - x0
};
const char* prediction_name(Prediction prediction);

// The latents a model works on: channels, and what turns them into pixels.
struct LatentFormat {
  int64_t channels = 0;
  // Pixels per latent in height and width: the VAE's down-scaling factor, or 1
  // for a model that makes pixels in [-1, 1] itself (no VAE).
  int64_t vae_factor = 1;
  // The model works on (vae latents - shift) * scaling (a VAE's own config wins).
  double scaling_factor = 1.0, shift_factor = 0.0;
  bool pixels() const { return vae_factor == 1; }
};

// One evaluation's graph: its inputs in declaration order with their roles,
// and the output [batch, output channels, h, w].
struct ModelGraph {
  runtime::Graph graph;
  std::vector<std::pair<InputRole, int>> inputs;
  int output = -1;
};

struct GraphShape {
  int64_t batch = 1, height = 0, width = 0;  // latents
  int64_t context_tokens = 0;                // text context length, for models that read one
  const runtime::LayerAdapters* adapters = nullptr;  // LoRA, for models that take them
};

class DiffusionModel {
 public:
  virtual ~DiffusionModel() = default;

  virtual std::string description() const = 0;
  virtual Prediction prediction() const = 0;
  // Whether the output also holds a learned variance (as many channels again),
  // which the ddpm sampler reads.
  virtual bool learned_variance() const { return false; }
  virtual const sampling::NoiseSchedule& noise_schedule() const = 0;
  virtual LatentFormat latent_format() const = 0;
  // Latent heights and widths must be multiples of this; the trained size.
  virtual int64_t latent_multiple() const = 0;
  virtual int64_t trained_latent_size() const = 0;

  // The layers adapters may target, part by part (none: the model takes no adapters).
  virtual const std::vector<LayerPart>& layer_parts() const;
  // The forward graph for one shape. Several threads may build at once.
  virtual std::unique_ptr<ModelGraph> build(const GraphShape& shape) const = 0;

  // Classifier-free guidance of the prediction (the output's first `channels`
  // planes) for `images` images: `cond` becomes the guided prediction. By
  // default uncond + scale (cond - uncond) everywhere.
  virtual void guide(float* cond, const float* uncond, int64_t images, int64_t plane, double scale) const;

  // What a request gets when it leaves a field unset.
  virtual Sampler default_sampler() const { return Sampler::Euler; }
  virtual int default_steps() const { return 20; }
  virtual double default_cfg_scale() const { return 7.0; }
};

}  // namespace tiledraw::models
