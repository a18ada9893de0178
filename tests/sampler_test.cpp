// The samplers on DDPM's discrete schedule, with a model that knows the answer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "sampling/sampler.h"
#include "test_util.h"
#include "tiledraw/error.h"

namespace tiledraw::sampling {
namespace {

TEST(Schedule, IsDdpmsLinearBetaScheduleAndSpacesStepsLikeDit) {
  const Schedule s = Schedule::linear();
  ASSERT_EQ(s.alphas_cumprod.size(), 1000u);
  EXPECT_NEAR(s.alphas_cumprod[0], 1.0 - 1e-4, 1e-15);
  EXPECT_NEAR(s.alphas_cumprod[1], (1.0 - 1e-4) * (1.0 - (1e-4 + (0.02 - 1e-4) / 999)), 1e-15);
  EXPECT_NEAR(s.alphas_cumprod[999], 4.035e-5, 1e-7);  // the product of all 1000 (1 - beta)
  EXPECT_EQ(spaced_timesteps(1000, 1000).back(), 999);
  const std::vector<int> fifty = spaced_timesteps(1000, 50);
  ASSERT_EQ(fifty.size(), 50u);
  EXPECT_EQ(fifty[0], 0);
  EXPECT_EQ(fifty[1], 20);  // round(999 / 49) = 20
  EXPECT_EQ(fifty[49], 999);
  EXPECT_THROW(spaced_timesteps(1000, 0), Error);
  EXPECT_THROW(spaced_timesteps(1000, 1001), Error);
  EXPECT_THAT([] { parse_sampler("heun"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("unknown sampler 'heun'")));
}

// A model that knows the clean sample x0: the noise it predicts is exactly the
// noise between its input and x0 at that timestep.
Denoiser oracle(const Schedule& s, const std::vector<float>& x0) {
  return [&s, &x0](const float* x, int t, float* eps, float* variance) {
    const double ab = s.alphas_cumprod[static_cast<size_t>(t)];
    for (size_t i = 0; i < x0.size(); ++i) {
      eps[i] = static_cast<float>((x[i] - std::sqrt(ab) * x0[i]) / std::sqrt(1.0 - ab));
      if (variance) variance[i] = 0.0f;
    }
  };
}

TEST(Samplers, EveryDeterministicSamplerLandsOnTheSampleAModelThatKnowsItPredicts) {
  const Schedule schedule = Schedule::linear();
  const std::vector<float> x0 = test::random_floats(300, 1, 0.5f);
  for (SamplerKind kind : {SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::DpmPp2m}) {
    for (int steps : {1, 2, 10, 50}) {
      NormalNoise noise(7);
      std::vector<float> x(x0.size());
      noise.fill(x.data(), x.size());
      int calls = 0;
      sample(kind, steps, schedule, x, oracle(schedule, x0), noise, [&](int done, int total) {
        EXPECT_EQ(done, ++calls);
        EXPECT_EQ(total, steps);
      });
      EXPECT_EQ(calls, steps);
      for (size_t i = 0; i < x0.size(); ++i) {
        ASSERT_NEAR(x[i], x0[i], 2e-4) << sampler_name(kind) << ", " << steps << " steps, element " << i;
      }
    }
  }
}

// A model whose prediction depends on its input (eps = 0.5 x + 0.1), so that
// every intermediate step shows in the result, against trajectories written out
// here from the papers' update rules.
TEST(Samplers, DdimAndEulerFollowTheirReferenceTrajectories) {
  const Schedule schedule = Schedule::linear();
  const std::vector<int> timesteps = spaced_timesteps(1000, 5);  // 0, 250, 500, 749, 999
  std::vector<int> seen;
  const Denoiser linear_model = [&](const float* x, int t, float* eps, float*) {
    seen.push_back(t);
    eps[0] = static_cast<float>(0.5 * x[0] + 0.1);
  };
  const auto ab = [&](int k) { return k < 0 ? 1.0 : schedule.alphas_cumprod[static_cast<size_t>(timesteps[k])]; };

  // DDIM (eta 0): x_prev = sqrt(ab_prev / ab) (x - sqrt(1 - ab) eps) + sqrt(1 - ab_prev) eps.
  double expected = 1.3;
  for (int k = 4; k >= 0; --k) {
    const double eps = static_cast<float>(0.5 * static_cast<float>(expected) + 0.1);
    expected = static_cast<float>(std::sqrt(ab(k - 1) / ab(k)) * (static_cast<float>(expected) - std::sqrt(1 - ab(k)) * eps) +
                                  std::sqrt(1 - ab(k - 1)) * eps);
  }
  std::vector<float> x = {1.3f};
  NormalNoise noise(1);
  sample(SamplerKind::Ddim, 5, schedule, x, linear_model, noise);
  EXPECT_NEAR(x[0], expected, 1e-5 * (1 + std::abs(expected)));
  EXPECT_EQ(seen, (std::vector<int>{999, 749, 500, 250, 0}));

  // Euler on sigma = sqrt((1 - ab) / ab): start at noise * sigma_max; the model
  // sees x / sqrt(1 + sigma^2); x_next = x + eps (sigma_next - sigma).
  const auto sigma = [&](int k) { return k < 0 ? 0.0 : std::sqrt((1 - ab(k)) / ab(k)); };
  expected = static_cast<float>(1.3 * sigma(4));
  for (int k = 4; k >= 0; --k) {
    const float in = static_cast<float>(static_cast<float>(expected) / std::sqrt(1 + sigma(k) * sigma(k)));
    const double eps = static_cast<float>(0.5 * in + 0.1);
    expected = static_cast<float>(static_cast<float>(expected) + eps * (sigma(k - 1) - sigma(k)));
  }
  x = {1.3f};
  sample(SamplerKind::Euler, 5, schedule, x, linear_model, noise);
  EXPECT_NEAR(x[0], expected, 1e-5 * (1 + std::abs(expected)));
}

TEST(Samplers, DdpmStepsFollowThePosteriorWithTheLearnedVariance) {
  // One element, two steps (timesteps 0 and 999): the first step is x_999 -> x_0
  // with noise, the second returns the posterior mean only.
  const Schedule schedule = Schedule::linear();
  const double ab999 = schedule.alphas_cumprod[999], ab0 = schedule.alphas_cumprod[0];
  const float x_start = 0.8f, eps_first = 0.3f, v_first = 0.5f;
  int call = 0;
  std::vector<float> x = {x_start};
  float expected = 0.0f;
  NormalNoise noise(3), replay(3);
  float z;
  replay.fill(&z, 1);
  const Denoiser model = [&](const float* in, int t, float* eps, float* variance) {
    if (call++ == 0) {
      EXPECT_EQ(t, 999);
      eps[0] = eps_first;
      variance[0] = v_first;
      // By hand: x0, the posterior mean, and log variance (1 - f) log(posterior) + f log(beta), f = 0.75.
      const double beta = 1.0 - ab999 / ab0;
      const double x0 = (in[0] - std::sqrt(1.0 - ab999) * eps_first) / std::sqrt(ab999);
      const double mean = beta * std::sqrt(ab0) / (1.0 - ab999) * x0 + (1.0 - ab0) * std::sqrt(1.0 - beta) / (1.0 - ab999) * in[0];
      const double log_var = 0.75 * std::log(beta) + 0.25 * std::log(beta * (1.0 - ab0) / (1.0 - ab999));
      expected = static_cast<float>(mean + std::exp(0.5 * log_var) * z);
    } else {
      EXPECT_EQ(t, 0);
      EXPECT_NEAR(in[0], expected, 1e-6);
      eps[0] = 0.0f;
      variance[0] = 0.0f;
    }
  };
  sample(SamplerKind::Ddpm, 2, schedule, x, model, noise);
  EXPECT_EQ(call, 2);
  // The last step from timestep 0 to the sample: the mean with alpha_bar_prev = 1 and eps = 0.
  EXPECT_NEAR(x[0], expected / std::sqrt(ab0), 1e-5);
}

TEST(Samplers, ClipDenoisedBoundsTheCleanEstimateAndKeepsItsNoiseConsistent) {
  const Schedule schedule = Schedule::linear();
  const int t = 600;
  const double ab = schedule.alphas_cumprod[t];
  // x = sqrt(ab) x0 + sqrt(1 - ab) eps with x0 = 3 (outside [-1, 1]) and x0 = 0.5 (inside).
  const std::vector<float> x = {static_cast<float>(std::sqrt(ab) * 3.0), static_cast<float>(std::sqrt(ab) * 0.5 + std::sqrt(1 - ab) * 0.2)};
  const Denoiser zero_noise = [](const float*, int, float* eps, float*) { eps[0] = 0.0f; eps[1] = 0.2f; };
  std::vector<float> eps(2);
  clip_denoised(schedule, zero_noise, 2)(x.data(), t, eps.data(), nullptr);
  // The first estimate is clipped to 1, so eps = (x - sqrt(ab)) / sqrt(1 - ab); the second is kept.
  EXPECT_NEAR(eps[0], (std::sqrt(ab) * 3.0 - std::sqrt(ab)) / std::sqrt(1 - ab), 1e-5);
  EXPECT_NEAR(eps[1], 0.2, 1e-5);
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

}  // namespace
}  // namespace tiledraw::sampling
