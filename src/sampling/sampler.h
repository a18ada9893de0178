#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "sampling/schedule.h"
#include "tiledraw/sampling.h"

// Samplers in sigma space, as k-diffusion defines them: a sampler walks a list
// of sigmas and sees the model only as a denoiser D(x, sigma) -> x0. Latents
// are flat float arrays; every update is computed in double per element.
namespace tiledraw::sampling {

// The clean estimate from latents x at noise level sigma (x = x0 + sigma noise,
// or flow's (1 - sigma) x0 + sigma noise). `variance`, asked for by ddpm only,
// receives the model's learned-variance output in [-1, 1] (-1 where the model
// has none: the posterior's variance).
using Denoiser = std::function<void(const float* x, double sigma, float* denoised, float* variance)>;

// The documented noise generator: xoshiro256** seeded through splitmix64,
// Box-Muller in double precision. The same seed gives the same floats on every
// machine.
class NormalNoise {
 public:
  explicit NormalNoise(uint64_t seed);
  void fill(float* out, size_t count);

 private:
  uint64_t next();
  uint64_t state_[4];
};

// One stream per image: image i draws from NormalNoise(seed + i), first its
// initial noise, then the noise of each stochastic step in order, so that an
// image of a batch is the image its seed makes alone.
class BatchNoise {
 public:
  BatchNoise(uint64_t seed, int64_t images, int64_t per_image);
  // images x per_image values, each image's from its own stream.
  void fill(float* out);
  int64_t size() const { return static_cast<int64_t>(streams_.size()) * per_image_; }

 private:
  std::vector<NormalNoise> streams_;
  int64_t per_image_;
};

// Runs `kind` over `sigmas` (descending; the last is the final noise level,
// usually 0): x holds the latents at sigmas[0] on entry and the sample on
// return, in the model's own form (a last level above 0 is scaled back to the
// model's variance-preserving input, as diffusers' DDIM returns it).
// Stochastic samplers draw from `noise`; `progress` is called after each step
// with (done, total).
void sample(Sampler kind, const std::vector<double>& sigmas, const ModelSampling& model_sampling, std::vector<float>& x,
            const Denoiser& model, BatchNoise& noise, const std::function<void(int, int)>& progress = {});

}  // namespace tiledraw::sampling
