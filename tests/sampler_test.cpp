// Schedules and samplers in sigma space, each against its definition written
// out here (k-diffusion's update rules, diffusers' timestep spacings), and
// against a model that knows the answer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "sampling/sampler.h"
#include "sampling/schedule.h"
#include "test_util.h"
#include "tiledraw/error.h"

namespace tiledraw::sampling {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr Sampler kAllSamplers[] = {Sampler::Euler,     Sampler::EulerAncestral,   Sampler::Heun,
                                    Sampler::Dpm2,      Sampler::DpmPp2m,          Sampler::DpmPp2sAncestral,
                                    Sampler::DpmPp2mSde, Sampler::Lcm,             Sampler::Ddim,
                                    Sampler::Ddpm};
constexpr Scheduler kAllSchedulers[] = {Scheduler::Default, Scheduler::Normal, Scheduler::Karras,
                                        Scheduler::Exponential, Scheduler::SgmUniform, Scheduler::Simple};

double sd_sigma(int t) {  // SD's scaled-linear schedule, by hand
  double product = 1.0;
  for (int i = 0; i <= t; ++i) {
    const double root = std::sqrt(0.00085) + (std::sqrt(0.012) - std::sqrt(0.00085)) * i / 999.0;
    product *= 1.0 - root * root;
  }
  return std::sqrt((1.0 - product) / product);
}

TEST(Schedule, DitsLinearBetasAndStableDiffusionsScaledLinearOnes) {
  const ModelSampling dit(NoiseSchedule::dit());
  ASSERT_EQ(dit.sigmas().size(), 1000u);
  const double ab0 = 1.0 - 1e-4, ab1 = ab0 * (1.0 - (1e-4 + (0.02 - 1e-4) / 999));
  EXPECT_NEAR(dit.sigmas()[0], std::sqrt((1 - ab0) / ab0), 1e-12);
  EXPECT_NEAR(dit.sigmas()[1], std::sqrt((1 - ab1) / ab1), 1e-12);
  EXPECT_NEAR(dit.sigma_max(), std::sqrt((1 - 4.035e-5) / 4.035e-5), 0.3);  // the product of all 1000 (1 - beta)

  const ModelSampling sd(NoiseSchedule::stable_diffusion());
  EXPECT_NEAR(sd.sigma_min(), 0.0292, 1e-4);  // the figures A1111 prints for SD 1.x
  EXPECT_NEAR(sd.sigma_max(), 14.6146, 1e-4);
  EXPECT_NEAR(sd.sigmas()[500], sd_sigma(500), 1e-9);
}

TEST(Schedule, TimestepsAndSigmasInterpolateInLogSigma) {
  const ModelSampling m(NoiseSchedule::stable_diffusion());
  for (const int t : {0, 1, 500, 998, 999}) EXPECT_DOUBLE_EQ(m.sigma_to_t(m.sigmas()[static_cast<size_t>(t)]), t);
  // t = 250.25: log sigma a quarter of the way from timestep 250 to 251.
  const double expected = std::exp(0.75 * std::log(sd_sigma(250)) + 0.25 * std::log(sd_sigma(251)));
  EXPECT_NEAR(m.t_to_sigma(250.25), expected, 1e-9);
  EXPECT_NEAR(m.sigma_to_t(expected), 250.25, 1e-9);
  EXPECT_EQ(m.sigma_to_t(100.0), 999.0);  // beyond the table: clamped
  EXPECT_EQ(m.sigma_to_t(1e-5), 0.0);
  EXPECT_NEAR(m.input_scale(2.0), 1.0 / std::sqrt(5.0), 1e-15);
  EXPECT_EQ(m.model_timestep(m.sigmas()[700]), 700.0);
}

TEST(Schedule, FlowSigmasAreShiftedTimeAndTheModelReadsSigmaTimesItsScale) {
  const ModelSampling m(NoiseSchedule::flow(3.0));
  const auto shift = [](double t) { return 3.0 * t / (1.0 + 2.0 * t); };
  EXPECT_NEAR(m.sigma_max(), 1.0, 1e-15);
  EXPECT_NEAR(m.sigma_min(), shift(0.001), 1e-15);
  EXPECT_NEAR(m.t_to_sigma(499), shift(0.5), 1e-15);
  EXPECT_NEAR(m.model_timestep(0.75), 750.0, 1e-12);
  EXPECT_EQ(m.input_scale(0.75), 1.0);
  EXPECT_NEAR(m.add_noise(2.0, -1.0, 0.25), 0.75 * 2.0 - 0.25, 1e-15);
  const std::vector<double> sigmas = sigmas_for(m, Scheduler::Normal, Sampler::Euler, 4);
  ASSERT_EQ(sigmas.size(), 5u);
  EXPECT_NEAR(sigmas[0], 1.0, 1e-15);
  EXPECT_NEAR(sigmas[1], shift(667.0 / 1000), 1e-12);  // t = 999 - 333, read as (t + 1) / 1000
  EXPECT_NEAR(sigmas[3], shift(0.001), 1e-15);
  EXPECT_EQ(sigmas[4], 0.0);
}

TEST(Schedule, OwnTimestepsFollowDitsRespacingAndDiffusersSpacings) {
  NoiseSchedule s = NoiseSchedule::dit();
  std::vector<int> fifty = spaced_timesteps(s, 50);
  ASSERT_EQ(fifty.size(), 50u);
  EXPECT_EQ(fifty.front(), 999);
  EXPECT_EQ(fifty[48], 20);  // round(999 / 49)
  EXPECT_EQ(fifty.back(), 0);
  // DiT sums the stride 999 / 6 = 166.5 and rounds halves to even: 166 and 832, not 167 and 833.
  EXPECT_THAT(spaced_timesteps(s, 7), ElementsAre(999, 832, 666, 500, 333, 166, 0));
  s = NoiseSchedule::stable_diffusion();  // leading, steps_offset 1
  fifty = spaced_timesteps(s, 50);
  EXPECT_EQ(fifty.front(), 981);
  EXPECT_EQ(fifty[1], 961);
  EXPECT_EQ(fifty.back(), 1);
  s.spacing.kind = TimestepSpacing::Kind::Trailing;  // round(1000 - i * 1000 / 3) - 1
  EXPECT_THAT(spaced_timesteps(s, 3), ElementsAre(999, 666, 332));
  s.spacing.kind = TimestepSpacing::Kind::Linspace;  // round(linspace(0, 999, 4)), reversed
  EXPECT_THAT(spaced_timesteps(s, 4), ElementsAre(999, 666, 333, 0));
  EXPECT_THAT([&] { spaced_timesteps(s, 1001); }, ::testing::ThrowsMessage<Error>(HasSubstr("must be 1..1000")));

  // ddim's default walk: those timesteps, then the clean sample or (SD's
  // set_alpha_to_one false) timestep 0; any other sampler defaults to normal.
  const ModelSampling sd(NoiseSchedule::stable_diffusion());
  std::vector<double> ddim = sigmas_for(sd, Scheduler::Default, Sampler::Ddim, 50);
  EXPECT_EQ(ddim.front(), sd.sigmas()[981]);
  EXPECT_EQ(ddim[49], sd.sigmas()[1]);
  EXPECT_EQ(ddim[50], sd.sigmas()[0]);
  EXPECT_EQ(sigmas_for(sd, Scheduler::Default, Sampler::Ddpm, 50).back(), 0.0);
  EXPECT_EQ(sigmas_for(sd, Scheduler::Default, Sampler::Euler, 50), sigmas_for(sd, Scheduler::Normal, Sampler::Euler, 50));
}

TEST(Schedule, EverySchedulerGivesTheSigmasOfItsDefinition) {
  const ModelSampling m(NoiseSchedule::stable_diffusion());
  const double lo = m.sigma_min(), hi = m.sigma_max();
  const int n = 5;
  for (const Scheduler kind : kAllSchedulers) {
    const std::vector<double> got = sigmas_for(m, kind, Sampler::Euler, n);
    ASSERT_EQ(got.size(), static_cast<size_t>(n + 1)) << scheduler_name(kind);
    EXPECT_EQ(got.back(), 0.0);
    for (int i = 0; i < n; ++i) {
      double expected = 0;
      switch (kind) {
        case Scheduler::Default:
        case Scheduler::Normal:  // t = linspace(999, 0, n)
          expected = m.t_to_sigma(999.0 - 999.0 * i / (n - 1));
          break;
        case Scheduler::Karras:  // Karras et al. (5), rho 7
          expected = std::pow(std::pow(hi, 1 / 7.0) + i / (n - 1.0) * (std::pow(lo, 1 / 7.0) - std::pow(hi, 1 / 7.0)), 7.0);
          break;
        case Scheduler::Exponential:
          expected = std::exp(std::log(hi) + i / (n - 1.0) * (std::log(lo) - std::log(hi)));
          break;
        case Scheduler::SgmUniform:  // linspace(999, 0, n + 1) without its last
          expected = m.t_to_sigma(999.0 - 999.0 * i / n);
          break;
        case Scheduler::Simple:  // every (1000 / n)-th sigma from the end
          expected = m.sigmas()[static_cast<size_t>(999 - static_cast<int>(i * (1000.0 / n)))];
          break;
      }
      EXPECT_NEAR(got[static_cast<size_t>(i)], expected, 1e-12 * hi) << scheduler_name(kind) << " step " << i;
    }
  }
  EXPECT_NEAR(sigmas_for(m, Scheduler::Karras, Sampler::Euler, n)[0], hi, 1e-12);
  EXPECT_NEAR(sigmas_for(m, Scheduler::Karras, Sampler::Euler, n)[n - 1], lo, 1e-12);
}

TEST(Schedule, DiffusersSchedulerConfigsAreRead) {
  const nlohmann::json config = {{"_class_name", "DDIMScheduler"}, {"beta_schedule", "scaled_linear"},
                                 {"beta_start", 0.00085},          {"beta_end", 0.012},
                                 {"num_train_timesteps", 1000},    {"set_alpha_to_one", false},
                                 {"steps_offset", 1},              {"prediction_type", "v_prediction"}};
  const NoiseSchedule s = NoiseSchedule::from_diffusers(config, NoiseSchedule::dit(), "scheduler_config.json");
  EXPECT_EQ(s.betas, NoiseSchedule::Betas::ScaledLinear);
  EXPECT_EQ(s.spacing.kind, TimestepSpacing::Kind::Leading);
  EXPECT_EQ(s.spacing.steps_offset, 1);
  EXPECT_FALSE(s.spacing.set_alpha_to_one);
  EXPECT_THAT([&] { NoiseSchedule::from_diffusers({{"beta_schedule", "cosine"}}, s, "x.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("x.json: beta_schedule 'cosine' is not supported")));
  EXPECT_EQ(NoiseSchedule::from_diffusers({{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"shift", 3.0}}, s, "x")
                .kind,
            NoiseSchedule::Kind::Flow);
}

// A model that knows the clean sample: every sampler, on every schedule, ends
// there (the stochastic ones too, since their noise is the model's to remove).
TEST(Samplers, EverySamplerOnEveryScheduleLandsOnTheSampleAModelThatKnowsItPredicts) {
  const std::vector<float> x0 = test::random_floats(300, 1, 0.5f);
  const Denoiser knows = [&](const float*, double, float* denoised, float* variance) {
    std::copy(x0.begin(), x0.end(), denoised);
    if (variance) std::fill_n(variance, x0.size(), 0.0f);
  };
  for (const NoiseSchedule& schedule : {NoiseSchedule::dit(), NoiseSchedule::stable_diffusion(), NoiseSchedule::flow(3.0)}) {
    const ModelSampling m(schedule);
    for (const Sampler kind : kAllSamplers) {
      if (kind == Sampler::Ddpm && m.flow()) continue;
      for (const Scheduler scheduler : kAllSchedulers) {
        for (const int steps : {1, 2, 10}) {
          const std::vector<double> sigmas = sigmas_for(m, scheduler, kind, steps);
          BatchNoise noise(7, 3, 100);
          std::vector<float> x(x0.size());
          noise.fill(x.data());
          for (float& v : x) v = static_cast<float>(m.add_noise(0.0, v, sigmas[0]));
          int calls = 0;
          sample(kind, sigmas, m, x, knows, noise, [&](int done, int total) {
            EXPECT_EQ(done, ++calls);
            EXPECT_EQ(total, steps);
          });
          EXPECT_EQ(calls, steps);
          const double last = sigmas.back();  // DDIM to timestep 0 keeps that level's noise
          if (last > 0) continue;
          for (size_t i = 0; i < x0.size(); ++i) {
            ASSERT_NEAR(x[i], x0[i], 2e-4) << sampler_name(kind) << ", " << scheduler_name(scheduler) << ", " << steps
                                           << " steps, " << schedule.describe() << ", element " << i;
          }
        }
      }
    }
  }
}

// A model whose estimate depends on its input and the noise level, so every
// intermediate value shows in the result; each sampler's trajectory is written
// out below from its definition (k-diffusion's sampling.py, ComfyUI's flow
// variants), in double with the latents stored as float between steps.
float toy_denoised(float x, double sigma) { return static_cast<float>((0.6 + 0.1 * sigma / (1 + sigma)) * x + 0.05 * sigma); }

struct Replay {  // the noise the sampler draws: image i from NormalNoise(seed + i)
  std::vector<NormalNoise> streams;
  int64_t per_image;
  std::vector<float> next() {
    std::vector<float> z;
    for (NormalNoise& s : streams) {
      std::vector<float> part(static_cast<size_t>(per_image));
      s.fill(part.data(), part.size());
      z.insert(z.end(), part.begin(), part.end());
    }
    return z;
  }
};

std::vector<float> reference_walk(Sampler kind, const std::vector<double>& sig, const ModelSampling& m, std::vector<float> x,
                                  Replay noise) {
  const size_t n = x.size();
  const auto D = [](const std::vector<float>& at, double s) {
    std::vector<float> out;
    for (float v : at) out.push_back(toy_denoised(v, s));
    return out;
  };
  std::vector<float> old;
  double h_last = 0;
  for (size_t k = 0; k + 1 < sig.size(); ++k) {
    const double s = sig[k], t = sig[k + 1];
    const std::vector<float> d0 = D(x, s);
    std::vector<double> next(n);
    if (kind == Sampler::Euler || kind == Sampler::Ddim) {
      for (size_t i = 0; i < n; ++i) next[i] = x[i] + (x[i] - d0[i]) / s * (t - s);
    } else if (kind == Sampler::EulerAncestral || kind == Sampler::DpmPp2sAncestral) {
      double down = t, scale = 1, up = 0;
      if (t > 0 && !m.flow()) {
        up = std::min(t, std::sqrt(t * t * (s * s - t * t) / (s * s)));
        down = std::sqrt(t * t - up * up);
      } else if (t > 0) {
        down = t * t / s;
        scale = (1 - t) / (1 - down);
        up = std::sqrt(t * t - down * down * scale * scale);
      }
      if (kind == Sampler::EulerAncestral || down == 0) {
        for (size_t i = 0; i < n; ++i) next[i] = x[i] + (x[i] - d0[i]) / s * (down - s);
      } else {
        const double tt = -std::log(s), tn = -std::log(down), h = tn - tt, mid = std::exp(-(tt + h / 2));
        std::vector<float> x2(n);
        for (size_t i = 0; i < n; ++i) x2[i] = static_cast<float>(mid / s * x[i] - std::expm1(-h / 2) * d0[i]);
        const std::vector<float> d2 = D(x2, mid);
        for (size_t i = 0; i < n; ++i) next[i] = down / s * x[i] - std::expm1(-h) * d2[i];
      }
      if (t > 0) {
        std::vector<float> stored(next.begin(), next.end());
        const std::vector<float> z = noise.next();
        for (size_t i = 0; i < n; ++i) next[i] = scale * stored[i] + up * z[i];
      }
    } else if (kind == Sampler::Heun || kind == Sampler::Dpm2) {
      if (t == 0) {
        for (size_t i = 0; i < n; ++i) next[i] = x[i] + (x[i] - d0[i]) / s * (t - s);
      } else {
        const double mid = kind == Sampler::Heun ? t : std::exp(std::log(s) + 0.5 * (std::log(t) - std::log(s)));
        std::vector<float> x2(n);
        for (size_t i = 0; i < n; ++i) x2[i] = static_cast<float>(x[i] + (x[i] - d0[i]) / s * (mid - s));
        const std::vector<float> d2 = D(x2, mid);
        for (size_t i = 0; i < n; ++i) {
          const double d = (x[i] - d0[i]) / s, dm = (x2[i] - d2[i]) / mid;
          next[i] = x[i] + (kind == Sampler::Heun ? (d + dm) / 2 : dm) * (t - s);
        }
      }
    } else if (kind == Sampler::DpmPp2m) {
      const double h = -std::log(t) + std::log(s);
      for (size_t i = 0; i < n; ++i) {
        if (t == 0) {
          next[i] = d0[i];
        } else if (old.empty()) {
          next[i] = t / s * x[i] - std::expm1(-h) * d0[i];
        } else {
          const double r = (std::log(sig[k - 1]) - std::log(s)) / h;
          next[i] = t / s * x[i] - std::expm1(-h) * ((1 + 1 / (2 * r)) * d0[i] - 1 / (2 * r) * old[i]);
        }
      }
      old = d0;
    } else if (kind == Sampler::DpmPp2mSde) {
      if (t == 0) {
        for (size_t i = 0; i < n; ++i) next[i] = d0[i];
      } else {
        const double from = m.flow() ? std::min(s, 0.9999) : s;
        const double alpha_t = m.flow() ? 1 - t : 1.0, alpha_s = m.flow() ? 1 - from : 1.0;
        const double h = std::log(alpha_t / t) - std::log(alpha_s / from);  // lambda = log(alpha / sigma)
        const std::vector<float> z = noise.next();
        for (size_t i = 0; i < n; ++i) {
          next[i] = t / from * std::exp(-h) * x[i] + alpha_t * -std::expm1(-2 * h) * d0[i];
          if (!old.empty()) next[i] += 0.5 * alpha_t * -std::expm1(-2 * h) / (h_last / h) * (d0[i] - old[i]);
          next[i] += z[i] * t * std::sqrt(-std::expm1(-2 * h));
        }
        h_last = h;
      }
      old = d0;
    } else if (kind == Sampler::Lcm) {
      const std::vector<float> z = t > 0 ? noise.next() : std::vector<float>(n);
      for (size_t i = 0; i < n; ++i) next[i] = m.flow() ? (1 - t) * d0[i] + t * z[i] : d0[i] + t * z[i];
    } else if (kind == Sampler::Ddpm) {  // variance output 0: halfway between posterior and beta (log)
      const double ab = 1 / (1 + s * s), abn = 1 / (1 + t * t), beta = 1 - ab / abn;
      const std::vector<float> z = t > 0 ? noise.next() : std::vector<float>(n);
      for (size_t i = 0; i < n; ++i) {
        const double xt = x[i] * std::sqrt(ab);
        const double mean = beta * std::sqrt(abn) / (1 - ab) * d0[i] + (1 - abn) * std::sqrt(1 - beta) / (1 - ab) * xt;
        const double log_var = t > 0 ? 0.5 * std::log(beta) + 0.5 * std::log(beta * (1 - abn) / (1 - ab)) : 0;
        next[i] = (t > 0 ? mean + std::exp(0.5 * log_var) * z[i] : mean) * std::sqrt(1 + t * t);
      }
    }
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(next[i]);
  }
  if (sig.back() > 0) {
    for (float& v : x) v = static_cast<float>(v / std::sqrt(1 + sig.back() * sig.back()));
  }
  return x;
}

TEST(Samplers, EachFollowsItsUpdateRuleWrittenOut) {
  const Denoiser toy = [](const float* x, double sigma, float* denoised, float* variance) {
    for (size_t i = 0; i < 4; ++i) {
      denoised[i] = toy_denoised(x[i], sigma);
      if (variance) variance[i] = 0.0f;
    }
  };
  const std::vector<float> start = {1.3f, -0.4f, 0.25f, 2.0f};  // two images of two values
  for (const NoiseSchedule& schedule : {NoiseSchedule::stable_diffusion(), NoiseSchedule::flow(3.0)}) {
    const ModelSampling m(schedule);
    for (const Sampler kind : kAllSamplers) {
      if (kind == Sampler::Ddpm && m.flow()) continue;
      for (const Scheduler scheduler : {Scheduler::Default, Scheduler::Karras}) {
        const std::vector<double> sigmas = sigmas_for(m, scheduler, kind, 5);
        std::vector<float> x = start;
        for (float& v : x) v = static_cast<float>(v * sigmas[0]);
        const std::vector<float> expected =
            reference_walk(kind, sigmas, m, x, Replay{{NormalNoise(9), NormalNoise(10)}, 2});
        BatchNoise noise(9, 2, 2);
        sample(kind, sigmas, m, x, toy, noise);
        for (size_t i = 0; i < x.size(); ++i) {
          EXPECT_NEAR(x[i], expected[i], 1e-5 * (1 + std::abs(expected[i])))
              << sampler_name(kind) << ", " << scheduler_name(scheduler) << ", " << schedule.describe() << ", value " << i;
        }
      }
    }
  }
}

TEST(Samplers, DdpmReadsTheLearnedVarianceAndDdpmOnAFlowModelIsRefused) {
  // One step from sigma(999) to 0 returns the posterior mean (x0); one step to
  // sigma(0) adds noise scaled between beta and the posterior by v = 0.5.
  const ModelSampling m(NoiseSchedule::dit());
  const double s = m.sigmas()[999], t = m.sigmas()[0];
  const Denoiser model = [](const float*, double, float* denoised, float* variance) {
    denoised[0] = 0.3f;
    variance[0] = 0.5f;
  };
  std::vector<float> x = {static_cast<float>(0.8 * s)};
  BatchNoise noise(3, 1, 1);
  sample(Sampler::Ddpm, {s, 0.0}, m, x, model, noise);
  EXPECT_NEAR(x[0], 0.3, 1e-6);

  x = {static_cast<float>(0.8 * s)};
  BatchNoise more(3, 1, 1);
  sample(Sampler::Ddpm, {s, t}, m, x, model, more);
  NormalNoise replay(3);
  float z;
  replay.fill(&z, 1);
  const double ab = 1 / (1 + s * s), abn = 1 / (1 + t * t), beta = 1 - ab / abn;
  const double mean = beta * std::sqrt(abn) / (1 - ab) * 0.3 + (1 - abn) * std::sqrt(1 - beta) / (1 - ab) * 0.8 * s * std::sqrt(ab);
  const double log_var = 0.75 * std::log(beta) + 0.25 * std::log(beta * (1 - abn) / (1 - ab));
  // The sample comes back in the model's variance-preserving form.
  EXPECT_NEAR(x[0], mean + std::exp(0.5 * log_var) * z, 1e-6);

  const ModelSampling flow(NoiseSchedule::flow(3.0));
  EXPECT_THAT([&] { sample(Sampler::Ddpm, {1.0, 0.0}, flow, x, model, noise); },
              ::testing::ThrowsMessage<Error>(HasSubstr("ddpm sampler needs a model with a discrete noise schedule")));
}

TEST(Samplers, NamesParseBothWays) {
  for (const Sampler kind : kAllSamplers) EXPECT_EQ(parse_sampler(sampler_name(kind)), kind);
  for (const Scheduler kind : kAllSchedulers) EXPECT_EQ(parse_scheduler(scheduler_name(kind)), kind);
  EXPECT_EQ(sampler_names().size(), std::size(kAllSamplers));
  EXPECT_THAT([] { parse_sampler("plms"); }, ::testing::ThrowsMessage<Error>(HasSubstr("unknown sampler 'plms' (one of euler, euler_a")));
  EXPECT_THAT([] { parse_scheduler("beta"); }, ::testing::ThrowsMessage<Error>(HasSubstr("unknown scheduler 'beta'")));
}

TEST(NormalNoise, IsReproducibleAndStandardNormal) {
  NormalNoise a(42), b(42), c(43);
  std::vector<float> va(100001), vb(100001), vc(8);
  a.fill(va.data(), va.size());
  b.fill(vb.data(), vb.size());
  c.fill(vc.data(), vc.size());
  EXPECT_EQ(va, vb);
  EXPECT_NE(std::vector<float>(va.begin(), va.begin() + 8), vc);
  double mean = 0, var = 0;
  for (float v : va) mean += v;
  mean /= static_cast<double>(va.size());
  for (float v : va) var += (v - mean) * (v - mean);
  var /= static_cast<double>(va.size());
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 1.0, 0.01);
}

TEST(NormalNoise, ImageIOfABatchDrawsFromSeedPlusI) {
  BatchNoise batch(100, 3, 5);
  std::vector<float> all(15), first(15);
  batch.fill(all.data());
  batch.fill(first.data());  // the second draw continues each stream
  for (int i = 0; i < 3; ++i) {
    NormalNoise alone(100 + static_cast<uint64_t>(i));
    std::vector<float> expected(10);
    alone.fill(expected.data(), 5);
    alone.fill(expected.data() + 5, 5);
    EXPECT_EQ(std::vector<float>(all.begin() + 5 * i, all.begin() + 5 * i + 5), std::vector<float>(expected.begin(), expected.begin() + 5));
    EXPECT_EQ(std::vector<float>(first.begin() + 5 * i, first.begin() + 5 * i + 5), std::vector<float>(expected.begin() + 5, expected.end()));
  }
}

}  // namespace
}  // namespace tiledraw::sampling
