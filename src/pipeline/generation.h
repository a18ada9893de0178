#pragma once

#include <atomic>
#include <utility>

#include "pipeline/loading.h"
#include "tiledraw/pipeline.h"

// Generation from a loaded model: conditioning, the sigmas of the chosen
// schedule, seeded noise, a sampler walking them with the model as its
// denoiser, then the VAE. What Pipeline::generate runs.
namespace tiledraw::pipeline {

// {height, width} in pixels; an Error when not a positive multiple of the model's unit.
std::pair<int64_t, int64_t> image_size(const LoadedModel& model, const GenerationRequest& request);

// Each call builds its own graphs, executors and arenas; the models, the
// accelerator and the program cache are shared (read-only after loading, or
// locked), so several calls may run at once.
GenerationResult generate(const LoadedModel& model, const Accelerator& accel, ProgramCache& cache,
                          const GenerationRequest& request, const ProgressCallback& progress,
                          const std::atomic<bool>* cancel);

}  // namespace tiledraw::pipeline
