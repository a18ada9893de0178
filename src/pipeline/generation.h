#pragma once

#include <atomic>
#include <functional>
#include <utility>

#include "pipeline/loading.h"
#include "tiledraw/pipeline.h"

// Generation from a loaded model: conditioning, the sigmas of the chosen
// schedule, seeded noise, a sampler walking them with the model as its
// denoiser, then the VAE. What Pipeline::generate runs.
namespace tiledraw::pipeline {

// {height, width} in pixels; an Error when not a positive multiple of the model's unit.
std::pair<int64_t, int64_t> image_size(const LoadedModel& model, const GenerationRequest& request);

// Called as a generation gets past a part, for a caller that frees that
// part's weights then (Pipeline::generate_and_release).
struct ReleaseHooks {
  std::function<void()> text_encoder;  // once the prompts are encoded
  std::function<void()> model;         // after sampling, before the VAE decodes
};

// Each call builds its own graphs, executors and arenas; the models, the
// accelerator and the program cache are shared (read-only after loading, or
// locked), so several calls may run at once (without release hooks).
GenerationResult generate(const LoadedModel& model, const Accelerator& accel, ProgramCache& cache,
                          const GenerationRequest& request, const ProgressCallback& progress,
                          const std::atomic<bool>* cancel, const ReleaseHooks& release = {});

}  // namespace tiledraw::pipeline
