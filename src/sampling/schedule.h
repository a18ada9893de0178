#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tiledraw/sampling.h"

// Noise levels in sigma space, as k-diffusion, the A1111 web UI and ComfyUI
// define them. A model's noise schedule says how its training timesteps map to
// sigmas; a scheduler picks the sigmas a sampler walks.
namespace tiledraw::sampling {

// How ddim and ddpm space their steps over the training timesteps by default.
struct TimestepSpacing {
  enum class Kind {
    Respaced,  // DiT's create_diffusion(str(steps)): round(i (T - 1) / (steps - 1)), both ends kept
    Leading,   // diffusers: (0, r, 2r, ...) + steps_offset with r = T // steps
    Trailing,  // diffusers: round(T, T - T / steps, ...) - 1
    Linspace,  // diffusers: round(linspace(0, T - 1, steps))
  };
  Kind kind = Kind::Respaced;
  int steps_offset = 0;
  // After the last step, the clean sample (true) or the sample at timestep 0
  // (false: SD's DDIM config, diffusers' set_alpha_to_one).
  bool set_alpha_to_one = true;
};

struct NoiseSchedule {
  // Discrete: variance preserving, x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise
  // over `timesteps` training steps; sigma_t = sqrt((1 - ab_t) / ab_t).
  // Flow: x = (1 - sigma) x0 + sigma noise, sigma = shift t / (1 + (shift - 1) t).
  enum class Kind { Discrete, Flow };
  enum class Betas { Linear, ScaledLinear };
  Kind kind = Kind::Discrete;
  Betas betas = Betas::Linear;
  double beta_start = 1e-4, beta_end = 0.02;
  int timesteps = 1000;
  TimestepSpacing spacing;
  double flow_shift = 1.0;
  double flow_timestep_scale = 1000.0;  // the model reads sigma times this

  // DiT's: linear betas 1e-4..0.02 over 1000 steps, respaced.
  static NoiseSchedule dit();
  // Stable Diffusion's: scaled-linear betas 0.00085..0.012, leading spacing,
  // steps_offset 1, set_alpha_to_one false.
  static NoiseSchedule stable_diffusion();
  // A flow-matching schedule with this shift (SD3: 3.0).
  static NoiseSchedule flow(double shift, double timestep_scale = 1000.0);
  // Fields of a diffusers scheduler_config.json over `base` (num_train_timesteps,
  // beta_schedule, beta_start, beta_end, timestep_spacing, steps_offset,
  // set_alpha_to_one, shift); `where` names the file in errors.
  static NoiseSchedule from_diffusers(const nlohmann::json& config, NoiseSchedule base, const std::string& where);
  std::string describe() const;
};

// Converts between sigmas and what the model reads, for one schedule.
class ModelSampling {
 public:
  explicit ModelSampling(const NoiseSchedule& schedule);
  const NoiseSchedule& schedule() const { return schedule_; }
  bool flow() const { return schedule_.kind == NoiseSchedule::Kind::Flow; }

  double sigma_min() const { return sigmas_.front(); }
  double sigma_max() const { return sigmas_.back(); }
  // A training timestep (possibly fractional) to its sigma: log-sigma
  // interpolated between the neighbouring whole timesteps (k-diffusion's
  // DiscreteSchedule); flow: the shifted (t + 1) / T.
  double t_to_sigma(double t) const;
  // The inverse for discrete schedules: the fractional timestep whose sigma
  // this is, interpolated in log sigma, clamped to [0, T - 1].
  double sigma_to_t(double sigma) const;
  // The timestep the model reads at `sigma`: sigma_to_t, or flow's sigma times its scale.
  double model_timestep(double sigma) const;
  // The factor that takes a latent at `sigma` to the model's input: discrete
  // 1 / sqrt(1 + sigma^2) (back to variance preserving), flow 1.
  double input_scale(double sigma) const;
  // The latent at `sigma` made from a clean one and unit noise: x0 + sigma
  // noise, or flow's (1 - sigma) x0 + sigma noise.
  double add_noise(double clean, double noise, double sigma) const;
  // An ancestral step from sigma to sigma_next with `eta`: the sampler moves
  // deterministically to sigma_down, then x = scale x + noise_scale z.
  struct AncestralStep {
    double sigma_down, scale, noise_scale;
  };
  AncestralStep ancestral_step(double sigma, double sigma_next, double eta = 1.0) const;
  // Half the log signal-to-noise ratio, log(alpha / sigma), and alpha itself
  // (1 for discrete, whose latents are x0 + sigma noise; 1 - sigma for flow).
  double half_log_snr(double sigma) const;
  double alpha(double sigma) const;

  // The training timesteps' sigmas, ascending (index t).
  const std::vector<double>& sigmas() const { return sigmas_; }

 private:
  NoiseSchedule schedule_;
  std::vector<double> sigmas_, log_sigmas_;
};

// The sigmas a sampler walks for `steps` steps, ending with the last noise level
// (0, or the sigma of timestep 0 for a DDIM config without set_alpha_to_one).
std::vector<double> sigmas_for(const ModelSampling& model, Scheduler scheduler, Sampler sampler, int steps);

// The model's own timesteps for `steps` steps, descending (ddim's and ddpm's default).
std::vector<int> spaced_timesteps(const NoiseSchedule& schedule, int steps);

}  // namespace tiledraw::sampling
