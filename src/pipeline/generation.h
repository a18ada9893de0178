#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/dit.h"
#include "models/vae.h"
#include "runtime/executor.h"
#include "sampling/sampler.h"
#include "tiledraw/accel.h"
#include "tiledraw/image.h"

// Class ids to pictures: a DiT sampled with classifier-free guidance, and the
// VAE that decodes its latents when it makes latents. The command line and
// library users both generate through this.
namespace tiledraw::pipeline {

// `per_class` images of each class in `classes`, in that order.
struct GenerationRequest {
  std::vector<int64_t> classes{0};
  int64_t per_class = 1;
  int steps = 50;
  sampling::SamplerKind sampler = sampling::SamplerKind::Ddim;
  double cfg_scale = 4.0;  // 1 turns guidance off
  uint64_t seed = 42;
  int64_t height = 0, width = 0;  // pixels; 0 means the model's trained size
};

// What one generation measured, for summaries and --profile.
struct GenerationReport {
  double sampling_seconds = 0.0, decode_seconds = 0.0;
  runtime::Profile model_profile, vae_profile;
  int64_t model_arena_bytes = 0, vae_arena_bytes = 0;
};

// Several generations may run at once on different threads: each has its own
// graphs, executors and arenas, and shares the model, the VAE, the accelerator
// and the program cache (read-only after loading, or locked).
class Generator {
 public:
  // `vae` is null for a model that makes pixels.
  Generator(const models::DitModel& model, const models::VaeDecoder* vae, const Accelerator& accel, ProgramCache& cache);

  // The picture size a request gets, {height, width}; an Error when it is not
  // a positive multiple of the patch size (times the VAE's factor).
  std::pair<int64_t, int64_t> image_size(const GenerationRequest& request) const;

  // Everything that needs memory (latents, graphs, arenas) is set up and counted
  // against the memory limit before the first step. A step whose model output
  // holds NaN or Inf stops the run with an Error naming the step and the op.
  std::vector<Image> generate(const GenerationRequest& request, const std::function<void(int, int)>& progress = {},
                              GenerationReport* report = nullptr) const;

 private:
  const models::DitModel& model_;
  const models::VaeDecoder* vae_;
  const Accelerator& accel_;
  ProgramCache& cache_;
};

}  // namespace tiledraw::pipeline
