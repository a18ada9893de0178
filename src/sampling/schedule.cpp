#include "sampling/schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "tiledraw/error.h"

namespace tiledraw::sampling {
namespace {

std::vector<double> alphas_cumprod(const NoiseSchedule& s) {
  std::vector<double> out;
  double product = 1.0;
  const int T = s.timesteps;
  for (int t = 0; t < T; ++t) {
    const double fraction = T == 1 ? 0.0 : static_cast<double>(t) / (T - 1);
    double beta = s.beta_start + (s.beta_end - s.beta_start) * fraction;
    if (s.betas == NoiseSchedule::Betas::ScaledLinear) {
      const double root = std::sqrt(s.beta_start) + (std::sqrt(s.beta_end) - std::sqrt(s.beta_start)) * fraction;
      beta = root * root;
    }
    product *= 1.0 - beta;
    out.push_back(product);
  }
  return out;
}

double shifted(double shift, double t) { return shift == 1.0 ? t : shift * t / (1.0 + (shift - 1.0) * t); }

// n values from `first` to `last`, both included (numpy's linspace).
std::vector<double> linspace(double first, double last, int n) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(n == 1 ? first : first + (last - first) * i / (n - 1));
  return out;
}

}  // namespace

NoiseSchedule NoiseSchedule::dit() { return NoiseSchedule{}; }

NoiseSchedule NoiseSchedule::stable_diffusion() {
  NoiseSchedule s;
  s.betas = Betas::ScaledLinear;
  s.beta_start = 0.00085;
  s.beta_end = 0.012;
  s.spacing = {TimestepSpacing::Kind::Leading, 1, false};
  return s;
}

NoiseSchedule NoiseSchedule::flow(double shift, double timestep_scale) {
  NoiseSchedule s;
  s.kind = Kind::Flow;
  s.flow_shift = shift;
  s.flow_timestep_scale = timestep_scale;
  return s;
}

NoiseSchedule NoiseSchedule::from_diffusers(const nlohmann::json& c, NoiseSchedule s, const std::string& where) {
  const auto number = [&](const char* key, double& out) {
    if (!c.contains(key) || c[key].is_null()) return;
    if (!c[key].is_number()) throw Error(where + ": '" + key + "' is not a number");
    out = c[key].get<double>();
  };
  const auto text = [&](const char* key) {
    if (!c.contains(key) || c[key].is_null()) return std::string();
    if (!c[key].is_string()) throw Error(where + ": '" + key + "' is not a string");
    return c[key].get<std::string>();
  };
  const std::string class_name = text("_class_name");
  if (class_name.find("FlowMatch") != std::string::npos) s.kind = Kind::Flow;
  double timesteps = s.timesteps, offset = s.spacing.steps_offset;
  number("num_train_timesteps", timesteps);
  number("beta_start", s.beta_start);
  number("beta_end", s.beta_end);
  number("steps_offset", offset);
  number("shift", s.flow_shift);
  if (timesteps < 2 || timesteps > 100000 || offset < 0 || offset >= timesteps || !(s.flow_shift > 0)) {
    throw Error(where + ": num_train_timesteps, steps_offset or shift is out of range");
  }
  s.timesteps = static_cast<int>(timesteps);
  s.spacing.steps_offset = static_cast<int>(offset);
  if (const std::string betas = text("beta_schedule"); betas == "linear") {
    s.betas = Betas::Linear;
  } else if (betas == "scaled_linear") {
    s.betas = Betas::ScaledLinear;
  } else if (!betas.empty()) {
    throw Error(where + ": beta_schedule '" + betas + "' is not supported (linear or scaled_linear)");
  }
  if (!(s.beta_start > 0 && s.beta_end >= s.beta_start && s.beta_end < 1)) {
    throw Error(where + ": beta_start and beta_end must satisfy 0 < start <= end < 1");
  }
  if (const std::string spacing = text("timestep_spacing"); spacing == "leading" || spacing.empty()) {
    // diffusers' default when a config names a scheduler but no spacing
    if (!class_name.empty() || !spacing.empty()) s.spacing.kind = TimestepSpacing::Kind::Leading;
  } else if (spacing == "trailing") {
    s.spacing.kind = TimestepSpacing::Kind::Trailing;
  } else if (spacing == "linspace") {
    s.spacing.kind = TimestepSpacing::Kind::Linspace;
  } else {
    throw Error(where + ": timestep_spacing '" + spacing + "' is not supported (leading, trailing or linspace)");
  }
  if (c.contains("set_alpha_to_one") && c["set_alpha_to_one"].is_boolean()) {
    s.spacing.set_alpha_to_one = c["set_alpha_to_one"].get<bool>();
  }
  return s;
}

std::string NoiseSchedule::describe() const {
  std::ostringstream out;
  if (kind == Kind::Flow) {
    out << "flow matching, shift " << flow_shift;
    return out.str();
  }
  out << (betas == Betas::Linear ? "linear" : "scaled-linear") << " betas " << beta_start << ".." << beta_end << " over "
      << timesteps << " timesteps";
  return out.str();
}

ModelSampling::ModelSampling(const NoiseSchedule& schedule) : schedule_(schedule) {
  const int T = schedule.timesteps;
  if (schedule.kind == NoiseSchedule::Kind::Flow) {
    for (int t = 0; t < T; ++t) sigmas_.push_back(shifted(schedule.flow_shift, static_cast<double>(t + 1) / T));
  } else {
    for (const double ab : alphas_cumprod(schedule)) sigmas_.push_back(std::sqrt((1.0 - ab) / ab));
  }
  for (const double s : sigmas_) log_sigmas_.push_back(std::log(s));
}

double ModelSampling::t_to_sigma(double t) const {
  const double last = static_cast<double>(sigmas_.size() - 1);
  t = std::clamp(t, 0.0, last);
  if (flow()) return shifted(schedule_.flow_shift, (t + 1.0) / static_cast<double>(sigmas_.size()));
  const size_t low = static_cast<size_t>(std::floor(t)), high = static_cast<size_t>(std::ceil(t));
  const double w = t - static_cast<double>(low);
  return std::exp((1.0 - w) * log_sigmas_[low] + w * log_sigmas_[high]);
}

double ModelSampling::sigma_to_t(double sigma) const {
  if (!(sigma > 0)) return 0.0;
  const double log_sigma = std::log(sigma);
  // The last timestep whose log sigma is at most this one, kept below the end.
  const size_t above = static_cast<size_t>(std::upper_bound(log_sigmas_.begin(), log_sigmas_.end(), log_sigma) - log_sigmas_.begin());
  const size_t low = std::min(above == 0 ? 0 : above - 1, log_sigmas_.size() - 2);
  const double w = std::clamp((log_sigmas_[low] - log_sigma) / (log_sigmas_[low] - log_sigmas_[low + 1]), 0.0, 1.0);
  return (1.0 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

double ModelSampling::model_timestep(double sigma) const {
  return flow() ? sigma * schedule_.flow_timestep_scale : sigma_to_t(sigma);
}

double ModelSampling::input_scale(double sigma) const { return flow() ? 1.0 : 1.0 / std::sqrt(1.0 + sigma * sigma); }

double ModelSampling::add_noise(double clean, double noise, double sigma) const {
  return flow() ? (1.0 - sigma) * clean + sigma * noise : clean + sigma * noise;
}

ModelSampling::AncestralStep ModelSampling::ancestral_step(double sigma, double sigma_next, double eta) const {
  if (sigma_next <= 0 || eta <= 0) return {sigma_next, 1.0, 0.0};
  if (flow()) {
    // ComfyUI's rectified-flow ancestral step: down to sigma_down, then rescale
    // towards the data and add the noise that brings the level to sigma_next.
    const double down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * eta);
    const double alpha_next = 1.0 - sigma_next, alpha_down = 1.0 - down;
    const double renoise = std::sqrt(std::max(0.0, sigma_next * sigma_next - down * down * alpha_next * alpha_next /
                                                                              (alpha_down * alpha_down)));
    return {down, alpha_next / alpha_down, renoise};
  }
  // k-diffusion's get_ancestral_step.
  const double up = std::min(sigma_next, eta * std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                                                          (sigma * sigma)));
  return {std::sqrt(sigma_next * sigma_next - up * up), 1.0, up};
}

double ModelSampling::alpha(double sigma) const { return flow() ? 1.0 - sigma : 1.0; }

double ModelSampling::half_log_snr(double sigma) const { return std::log(alpha(sigma) / sigma); }

std::vector<int> spaced_timesteps(const NoiseSchedule& s, int steps) {
  const int T = s.timesteps;
  if (steps < 1 || steps > T) {
    throw Error(std::to_string(steps) + " steps on the model's own timesteps: must be 1.." + std::to_string(T));
  }
  std::vector<int> ascending;
  switch (s.spacing.kind) {
    case TimestepSpacing::Kind::Respaced: {
      // As DiT's space_timesteps runs it: a stride summed in floating point,
      // rounded half to even (Python's round).
      const double stride = steps == 1 ? 1.0 : static_cast<double>(T - 1) / (steps - 1);
      double position = 0.0;
      for (int i = 0; i < steps; ++i, position += stride) ascending.push_back(static_cast<int>(std::nearbyint(position)));
      break;
    }
    case TimestepSpacing::Kind::Leading:
      for (int i = 0; i < steps; ++i) ascending.push_back(std::min(T - 1, i * (T / steps) + s.spacing.steps_offset));
      break;
    case TimestepSpacing::Kind::Trailing:
      for (int i = steps - 1; i >= 0; --i) {
        ascending.push_back(static_cast<int>(std::nearbyint(T - i * (static_cast<double>(T) / steps))) - 1);
      }
      break;
    case TimestepSpacing::Kind::Linspace:
      for (double t : linspace(0, T - 1, steps)) ascending.push_back(static_cast<int>(std::nearbyint(t)));
      break;
  }
  return {ascending.rbegin(), ascending.rend()};
}

std::vector<double> sigmas_for(const ModelSampling& m, Scheduler scheduler, Sampler sampler, int steps) {
  if (steps < 1) throw Error("the number of steps must be at least 1");
  const int T = static_cast<int>(m.sigmas().size());
  std::vector<double> sigmas;
  const bool own_timesteps = scheduler == Scheduler::Default && !m.flow() && (sampler == Sampler::Ddim || sampler == Sampler::Ddpm);
  if (own_timesteps) {
    for (const int t : spaced_timesteps(m.schedule(), steps)) sigmas.push_back(m.sigmas()[static_cast<size_t>(t)]);
    const bool to_timestep_zero = sampler == Sampler::Ddim && !m.schedule().spacing.set_alpha_to_one;
    sigmas.push_back(to_timestep_zero ? m.sigma_min() : 0.0);
    return sigmas;
  }
  const double smin = m.sigma_min(), smax = m.sigma_max();
  switch (scheduler) {
    case Scheduler::Default:
    case Scheduler::Normal:
      for (const double t : linspace(T - 1, 0, steps)) sigmas.push_back(m.t_to_sigma(t));
      break;
    case Scheduler::Karras: {
      constexpr double rho = 7.0;
      const double max_inv = std::pow(smax, 1.0 / rho), min_inv = std::pow(smin, 1.0 / rho);
      for (const double ramp : linspace(0, 1, steps)) sigmas.push_back(std::pow(max_inv + ramp * (min_inv - max_inv), rho));
      break;
    }
    case Scheduler::Exponential:
      for (const double log_sigma : linspace(std::log(smax), std::log(smin), steps)) sigmas.push_back(std::exp(log_sigma));
      break;
    case Scheduler::SgmUniform: {
      const std::vector<double> t = linspace(T - 1, 0, steps + 1);
      for (int i = 0; i < steps; ++i) sigmas.push_back(m.t_to_sigma(t[static_cast<size_t>(i)]));
      break;
    }
    case Scheduler::Simple:
      for (int i = 0; i < steps; ++i) {
        const int offset = static_cast<int>(i * (static_cast<double>(T) / steps));  // ComfyUI's x * (T / steps)
        sigmas.push_back(m.sigmas()[static_cast<size_t>(std::max(0, T - 1 - offset))]);
      }
      break;
  }
  sigmas.push_back(0.0);
  return sigmas;
}

}  // namespace tiledraw::sampling
