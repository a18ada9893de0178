#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "pipeline/conditioning.h"
#include "runtime/executor.h"
#include "sampling/sampler.h"

// Any diffusion model as a denoiser D(x, sigma) -> x0 for the samplers: the
// latents scaled to the model's input, sigma turned into the timestep it
// reads, the conditional and unconditional branches in one batched call
// guided as the model guides, and its prediction (noise, v or velocity) turned
// into the clean estimate.
namespace tiledraw::pipeline {

class ModelDenoiser {
 public:
  // `images` latents of latent_h x latent_w; guidance runs when cfg_scale != 1.
  // Pixel-space models get their clean estimate clipped to [-1, 1]
  // (guided-diffusion's clip_denoised).
  ModelDenoiser(const models::DiffusionModel& model, const sampling::ModelSampling& sampling,
                const Conditioning& conditioning, double cfg_scale, int64_t latent_h, int64_t latent_w,
                bool clip_to_pixels, const Accelerator& accel, ProgramCache& cache, const std::atomic<bool>* cancel,
                const runtime::LayerAdapters* adapters = nullptr);

  // A model output with NaN or Inf stops the run with an Error naming the step
  // (set_step) and the op that made it first.
  void operator()(const float* x, double sigma, float* denoised, float* variance);
  void set_step(int done, int total) {
    step_ = done;
    steps_ = total;
  }
  const runtime::Executor& executor() const { return *exec_; }
  // The floats it holds besides the graph's arena, for the memory budget.
  static int64_t buffer_floats(const models::DiffusionModel& model, const Conditioning& conditioning, bool guided,
                               int64_t latent_h, int64_t latent_w);

 private:
  const models::DiffusionModel& model_;
  const sampling::ModelSampling& sampling_;
  double cfg_scale_;
  bool guided_, clip_;
  int64_t images_, rows_, channels_, plane_, out_channels_;
  std::unique_ptr<models::ModelGraph> graph_;
  std::unique_ptr<runtime::Executor> exec_;
  std::vector<std::vector<float>> inputs_;  // per graph input; latents and timesteps refilled per call
  std::vector<const float*> bound_;
  size_t latents_input_ = 0, timestep_input_ = 0;
  std::vector<float> prediction_, uncond_;
  int step_ = 0, steps_ = 0;
};

}  // namespace tiledraw::pipeline
