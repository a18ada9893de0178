#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>

#include "tiledraw/error.h"

namespace tiledraw::sampling {

Schedule Schedule::linear(int timesteps) {
  // guided-diffusion's "linear" schedule, scaled so any length spans the same range.
  const double scale = 1000.0 / timesteps, start = scale * 1e-4, end = scale * 0.02;
  Schedule s;
  double product = 1.0;
  for (int t = 0; t < timesteps; ++t) {
    const double beta = timesteps == 1 ? start : start + (end - start) * t / (timesteps - 1);
    product *= 1.0 - beta;
    s.alphas_cumprod.push_back(product);
  }
  return s;
}

std::vector<int> spaced_timesteps(int total, int steps) {
  if (steps < 1 || steps > total) {
    throw Error("--steps " + std::to_string(steps) + " is outside 1.." + std::to_string(total));
  }
  std::vector<int> out;
  const double stride = steps == 1 ? 0.0 : static_cast<double>(total - 1) / (steps - 1);
  for (int i = 0; i < steps; ++i) out.push_back(static_cast<int>(std::lround(i * stride)));
  return out;
}

SamplerKind parse_sampler(const std::string& name) {
  for (SamplerKind k : {SamplerKind::Ddpm, SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::DpmPp2m}) {
    if (name == sampler_name(k)) return k;
  }
  throw Error("--sampler: unknown sampler '" + name + "' (use ddpm, ddim, euler or dpm++2m)");
}

const char* sampler_name(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::Ddpm:
      return "ddpm";
    case SamplerKind::Ddim:
      return "ddim";
    case SamplerKind::Euler:
      return "euler";
    case SamplerKind::DpmPp2m:
      break;
  }
  return "dpm++2m";
}

Denoiser clip_denoised(const Schedule& schedule, Denoiser model, size_t count) {
  return [&schedule, model = std::move(model), count](const float* x, int timestep, float* eps, float* variance) {
    model(x, timestep, eps, variance);
    const double ab = schedule.alphas_cumprod.at(static_cast<size_t>(timestep));
    const double signal = std::sqrt(ab), noise = std::sqrt(1.0 - ab);
    for (size_t i = 0; i < count; ++i) {
      const double x0 = std::clamp((x[i] - noise * eps[i]) / signal, -1.0, 1.0);
      eps[i] = static_cast<float>((x[i] - signal * x0) / noise);
    }
  };
}

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

NormalNoise::NormalNoise(uint64_t seed) {
  for (uint64_t& s : state_) s = splitmix64(seed);
}

uint64_t NormalNoise::next() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

void NormalNoise::fill(float* out, size_t count) {
  constexpr double kTwoPi = 6.283185307179586;
  for (size_t i = 0; i < count; i += 2) {
    // Uniforms in (0, 1]: 53 random bits, never zero so the log is finite.
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(radius * std::cos(kTwoPi * u2));
    if (i + 1 < count) out[i + 1] = static_cast<float>(radius * std::sin(kTwoPi * u2));
  }
}

void sample(SamplerKind kind, int steps, const Schedule& schedule, std::vector<float>& x, const Denoiser& model,
            NormalNoise& noise, const std::function<void(int, int)>& progress) {
  const std::vector<int> timesteps = spaced_timesteps(static_cast<int>(schedule.alphas_cumprod.size()), steps);
  const size_t n = x.size();
  std::vector<float> eps(n), variance(kind == SamplerKind::Ddpm ? n : 0), fresh(kind == SamplerKind::Ddpm ? n : 0);
  std::vector<double> old_denoised;
  const auto alpha_bar = [&](int k) { return k < 0 ? 1.0 : schedule.alphas_cumprod[static_cast<size_t>(timesteps[k])]; };
  // Noise levels of the variance-exploding view x / sqrt(alpha_bar) (Euler, DPM++).
  const auto sigma = [&](int k) { return k < 0 ? 0.0 : std::sqrt((1.0 - alpha_bar(k)) / alpha_bar(k)); };
  if (kind == SamplerKind::Euler || kind == SamplerKind::DpmPp2m) {
    // The variance-exploding start, noise * sigma_max, as k-diffusion's samplers.
    const double sigma_max = sigma(steps - 1);
    for (float& v : x) v = static_cast<float>(v * sigma_max);
  }
  std::vector<float> model_input(kind == SamplerKind::Euler || kind == SamplerKind::DpmPp2m ? n : 0);
  for (int k = steps - 1; k >= 0; --k) {
    const double ab = alpha_bar(k), ab_prev = alpha_bar(k - 1);
    switch (kind) {
      case SamplerKind::Ddim:
      case SamplerKind::Ddpm: {
        model(x.data(), timesteps[k], eps.data(), kind == SamplerKind::Ddpm ? variance.data() : nullptr);
        const double beta = 1.0 - ab / ab_prev;
        // DDPM: the posterior q(x_{k-1} | x_k, x0) of the respaced chain; the
        // model's output v in [-1, 1] interpolates its log variance between the
        // posterior's and beta's (improved DDPM, as DiT samples). No noise at k = 0.
        const double log_posterior = k > 0 ? std::log(beta * (1.0 - ab_prev) / (1.0 - ab)) : 0.0;
        if (kind == SamplerKind::Ddpm && k > 0) noise.fill(fresh.data(), n);
        for (size_t i = 0; i < n; ++i) {
          const double x0 = (x[i] - std::sqrt(1.0 - ab) * eps[i]) / std::sqrt(ab);
          if (kind == SamplerKind::Ddim) {
            x[i] = static_cast<float>(std::sqrt(ab_prev) * x0 + std::sqrt(1.0 - ab_prev) * eps[i]);
            continue;
          }
          const double mean = beta * std::sqrt(ab_prev) / (1.0 - ab) * x0 +
                              (1.0 - ab_prev) * std::sqrt(1.0 - beta) / (1.0 - ab) * x[i];
          const double fraction = (variance[i] + 1.0) / 2.0;
          const double log_var = fraction * std::log(beta) + (1.0 - fraction) * log_posterior;
          x[i] = static_cast<float>(k > 0 ? mean + std::exp(0.5 * log_var) * fresh[i] : mean);
        }
        break;
      }
      case SamplerKind::Euler:
      case SamplerKind::DpmPp2m: {
        const double s = sigma(k), s_next = sigma(k - 1);
        const double scale_in = 1.0 / std::sqrt(1.0 + s * s);  // back to the model's variance-preserving input
        for (size_t i = 0; i < n; ++i) model_input[i] = static_cast<float>(x[i] * scale_in);
        model(model_input.data(), timesteps[k], eps.data(), nullptr);
        std::vector<double> denoised(n);
        for (size_t i = 0; i < n; ++i) denoised[i] = x[i] - s * eps[i];
        if (kind == SamplerKind::Euler) {
          for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(x[i] + eps[i] * (s_next - s));
        } else {
          // DPM-Solver++(2M): second order from the previous step's estimate, first order at the ends.
          const double h = std::log(s) - (s_next > 0 ? std::log(s_next) : -INFINITY);
          const double ratio = s_next / s, weight = -std::expm1(-h);
          const bool second_order = !old_denoised.empty() && s_next > 0;
          const double h_last = second_order ? std::log(sigma(k + 1)) - std::log(s) : 0.0;
          const double r = second_order ? h_last / h : 0.0;
          for (size_t i = 0; i < n; ++i) {
            const double d = second_order ? (1.0 + 1.0 / (2.0 * r)) * denoised[i] - old_denoised[i] / (2.0 * r) : denoised[i];
            x[i] = static_cast<float>(ratio * x[i] + weight * d);
          }
          old_denoised = std::move(denoised);
        }
        break;
      }
    }
    if (progress) progress(steps - k, steps);
  }
}

}  // namespace tiledraw::sampling
