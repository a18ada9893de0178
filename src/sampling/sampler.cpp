#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>

#include "tiledraw/error.h"

namespace tiledraw::sampling {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// The state a sampler keeps between steps, and its buffers.
struct Walk {
  const std::vector<double>& sigmas;
  const ModelSampling& ms;
  std::vector<float>& x;
  const Denoiser& model;
  BatchNoise& noise;
  size_t n;
  std::vector<float> denoised, second, trial, variance, z;
  std::vector<double> old_denoised;
  double h_last = 0.0;

  void denoise(const float* at, double sigma, std::vector<float>& out, float* learned_variance = nullptr) {
    model(at, sigma, out.data(), learned_variance);
  }
  const std::vector<float>& draw() {
    noise.fill(z.data());
    return z;
  }
  // x = scale x + noise_scale z: the noise an ancestral step adds.
  void renoise(const ModelSampling::AncestralStep& a) {
    if (a.noise_scale == 0) return;
    draw();
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(a.scale * x[i] + a.noise_scale * z[i]);
  }
  // x moves along (x - denoised) / sigma from sigma to `to` (Euler's step).
  void euler_to(double sigma, double to) {
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(x[i] + (x[i] - double(denoised[i])) / sigma * (to - sigma));
  }
  void step(Sampler kind, size_t k);
};

void Walk::step(Sampler kind, size_t k) {
  const double s = sigmas[k], s_next = sigmas[k + 1];
  switch (kind) {
    case Sampler::Euler:
      denoise(x.data(), s, denoised);
      euler_to(s, s_next);
      return;
    case Sampler::Ddim:
      // DDIM with eta 0: the clean estimate plus its implied noise at the next level.
      denoise(x.data(), s, denoised);
      for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(denoised[i] + s_next / s * (x[i] - double(denoised[i])));
      return;
    case Sampler::EulerAncestral: {
      denoise(x.data(), s, denoised);
      const ModelSampling::AncestralStep a = ms.ancestral_step(s, s_next);
      euler_to(s, a.sigma_down);
      renoise(a);
      return;
    }
    case Sampler::Heun:
    case Sampler::Dpm2: {
      denoise(x.data(), s, denoised);
      if (s_next == 0) {
        euler_to(s, s_next);
        return;
      }
      // Heun: a trial step to sigma_next, then the mean of both slopes. DPM2:
      // the slope at the midpoint in log sigma, used for the whole step.
      const double mid = kind == Sampler::Heun ? s_next : std::exp(0.5 * (std::log(s) + std::log(s_next)));
      for (size_t i = 0; i < n; ++i) trial[i] = static_cast<float>(x[i] + (x[i] - double(denoised[i])) / s * (mid - s));
      denoise(trial.data(), mid, second);
      for (size_t i = 0; i < n; ++i) {
        const double d = (x[i] - double(denoised[i])) / s, d_mid = (trial[i] - double(second[i])) / mid;
        const double slope = kind == Sampler::Heun ? 0.5 * (d + d_mid) : d_mid;
        x[i] = static_cast<float>(x[i] + slope * (s_next - s));
      }
      return;
    }
    case Sampler::DpmPp2sAncestral: {
      denoise(x.data(), s, denoised);
      const ModelSampling::AncestralStep a = ms.ancestral_step(s, s_next);
      if (a.sigma_down == 0) {
        euler_to(s, 0.0);
      } else {
        // DPM-Solver++(2S) to sigma_down, its midpoint halfway in log sigma.
        const double h = std::log(s) - std::log(a.sigma_down), mid = s * std::exp(-0.5 * h);
        for (size_t i = 0; i < n; ++i) trial[i] = static_cast<float>(mid / s * x[i] - std::expm1(-0.5 * h) * denoised[i]);
        denoise(trial.data(), mid, second);
        for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(a.sigma_down / s * x[i] - std::expm1(-h) * second[i]);
      }
      renoise(a);
      return;
    }
    case Sampler::DpmPp2m: {
      denoise(x.data(), s, denoised);
      if (s_next == 0) {
        std::copy(denoised.begin(), denoised.end(), x.begin());
      } else {
        // DPM-Solver++(2M): second order from the previous step's estimate.
        const double h = std::log(s) - std::log(s_next);
        const bool second_order = !old_denoised.empty();
        const double r = second_order ? (std::log(sigmas[k - 1]) - std::log(s)) / h : 0.0;
        for (size_t i = 0; i < n; ++i) {
          const double d = second_order ? (1.0 + 1.0 / (2.0 * r)) * denoised[i] - old_denoised[i] / (2.0 * r) : denoised[i];
          x[i] = static_cast<float>(s_next / s * x[i] - std::expm1(-h) * d);
        }
      }
      old_denoised.assign(denoised.begin(), denoised.end());
      return;
    }
    case Sampler::DpmPp2mSde: {
      denoise(x.data(), s, denoised);
      if (s_next == 0) {
        std::copy(denoised.begin(), denoised.end(), x.begin());
        return;
      }
      // DPM-Solver++(2M) SDE, eta 1, midpoint correction, in half-log-SNR
      // lambda (ComfyUI's form, which is k-diffusion's for x0 + sigma noise
      // latents and also serves flow models). Flow's sigma 1 has no finite
      // lambda: it starts a hair below, as ComfyUI does.
      const double from = ms.flow() ? std::min(s, 1.0 - 1e-4) : s;
      const double h = ms.half_log_snr(s_next) - ms.half_log_snr(from);
      const double decay = -std::expm1(-2.0 * h), alpha_next = ms.alpha(s_next);
      const bool second_order = !old_denoised.empty();
      draw();
      for (size_t i = 0; i < n; ++i) {
        double v = s_next / from * std::exp(-h) * x[i] + alpha_next * decay * denoised[i];
        if (second_order) v += 0.5 * alpha_next * decay * (h / h_last) * (denoised[i] - old_denoised[i]);
        x[i] = static_cast<float>(v + s_next * std::sqrt(decay) * z[i]);
      }
      old_denoised.assign(denoised.begin(), denoised.end());
      h_last = h;
      return;
    }
    case Sampler::Lcm:
      // The clean estimate, noised afresh to the next level.
      denoise(x.data(), s, denoised);
      if (s_next > 0) draw();
      for (size_t i = 0; i < n; ++i) {
        x[i] = static_cast<float>(s_next > 0 ? ms.add_noise(denoised[i], z[i], s_next) : double(denoised[i]));
      }
      return;
    case Sampler::Ddpm: {
      // The posterior q(x_next | x, x0) of the chain through these levels, in
      // variance-preserving form; the model's output v in [-1, 1] interpolates
      // its log variance between the posterior's and beta's (improved DDPM, as
      // DiT samples). No noise at the last step.
      denoise(x.data(), s, denoised, variance.data());
      const double ab = 1.0 / (1.0 + s * s), ab_next = 1.0 / (1.0 + s_next * s_next);
      const double beta = 1.0 - ab / ab_next;
      const double log_posterior = s_next > 0 ? std::log(beta * (1.0 - ab_next) / (1.0 - ab)) : 0.0;
      if (s_next > 0) draw();
      for (size_t i = 0; i < n; ++i) {
        const double x_vp = x[i] * std::sqrt(ab);
        const double mean = beta * std::sqrt(ab_next) / (1.0 - ab) * denoised[i] +
                            (1.0 - ab_next) * std::sqrt(1.0 - beta) / (1.0 - ab) * x_vp;
        const double fraction = (variance[i] + 1.0) / 2.0;
        const double log_var = fraction * std::log(beta) + (1.0 - fraction) * log_posterior;
        const double next_vp = s_next > 0 ? mean + std::exp(0.5 * log_var) * z[i] : mean;
        x[i] = static_cast<float>(next_vp / std::sqrt(ab_next));
      }
      return;
    }
  }
}

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

BatchNoise::BatchNoise(uint64_t seed, int64_t images, int64_t per_image) : per_image_(per_image) {
  for (int64_t i = 0; i < images; ++i) streams_.emplace_back(seed + static_cast<uint64_t>(i));
}

void BatchNoise::fill(float* out) {
  for (size_t i = 0; i < streams_.size(); ++i) streams_[i].fill(out + static_cast<int64_t>(i) * per_image_, static_cast<size_t>(per_image_));
}

void sample(Sampler kind, const std::vector<double>& sigmas, const ModelSampling& ms, std::vector<float>& x,
            const Denoiser& model, BatchNoise& noise, const std::function<void(int, int)>& progress) {
  if (sigmas.size() < 2) throw Error("a sampler needs at least one step");
  if (kind == Sampler::Ddpm && ms.flow()) throw Error("the ddpm sampler needs a model with a discrete noise schedule");
  if (static_cast<int64_t>(x.size()) != noise.size()) throw Error("the noise streams do not cover the latents");
  const size_t n = x.size();
  Walk walk{sigmas, ms, x, model, noise, n, std::vector<float>(n), {}, {}, {}, std::vector<float>(n), {}, 0.0};
  if (kind == Sampler::Heun || kind == Sampler::Dpm2 || kind == Sampler::DpmPp2sAncestral) {
    walk.second.resize(n);  // the estimate at the second point of the step, and that point
    walk.trial.resize(n);
  }
  if (kind == Sampler::Ddpm) walk.variance.resize(n);
  const int steps = static_cast<int>(sigmas.size()) - 1;
  for (int k = 0; k < steps; ++k) {
    walk.step(kind, static_cast<size_t>(k));
    if (progress) progress(k + 1, steps);
  }
  if (const double last = sigmas.back(); last > 0) {
    const double scale = ms.input_scale(last);
    for (float& v : x) v = static_cast<float>(v * scale);
  }
}

}  // namespace tiledraw::sampling
