#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// Sampling on DDPM's discrete schedule, as DiT was trained (1000 steps, linear
// betas from 1e-4 to 0.02). Latents are flat float arrays; the model is a
// callback that predicts the noise (and, for DDPM, the learned variance).
namespace tiledraw::sampling {

struct Schedule {
  std::vector<double> alphas_cumprod;  // per training timestep
  static Schedule linear(int timesteps = 1000);
};

// `steps` training timesteps spread evenly over [0, total), both ends kept
// (the respacing of DiT's create_diffusion(str(steps))), in ascending order.
std::vector<int> spaced_timesteps(int total, int steps);

enum class SamplerKind { Ddpm, Ddim, Euler, DpmPp2m };
SamplerKind parse_sampler(const std::string& name);  // ddpm, ddim, euler, dpm++2m
const char* sampler_name(SamplerKind kind);

// The model at one step: from latents x (count floats) at training timestep t,
// write the predicted noise; `variance` (the model's learned-variance output,
// in [-1, 1]) is read by DDPM only and is null for the others.
using Denoiser = std::function<void(const float* x, int timestep, float* eps, float* variance)>;

// Wraps a model so that its implied clean sample x0 = (x - sqrt(1 - ab) eps) /
// sqrt(ab) is clipped to [-1, 1] and the noise recomputed from it, as
// guided-diffusion's clip_denoised does for pixel-space models. Every sampler
// calls the model on variance-preserving latents, so one wrapper serves all.
Denoiser clip_denoised(const Schedule& schedule, Denoiser model, size_t count);

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

// Runs the sampler from pure noise (x holds it on entry) to a sample (x on
// return). `noise` draws the fresh noise DDPM adds at each step. `progress`
// is called after each step with (done, total).
void sample(SamplerKind kind, int steps, const Schedule& schedule, std::vector<float>& x, const Denoiser& model,
            NormalNoise& noise, const std::function<void(int, int)>& progress = {});

}  // namespace tiledraw::sampling
