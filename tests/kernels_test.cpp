// Each CPU op's fast kernel against its scalar oracle, odd sizes included.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/attention/attention.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/norm/norm.h"
#include "test_util.h"
#include "tiledraw/cpu.h"

namespace tiledraw {
namespace {

using kernels::Binary;
using kernels::Unary;

const std::vector<std::pair<int64_t, int64_t>> kShapes = {{1, 1}, {3, 15}, {2, 16}, {5, 17}, {7, 100}, {4, 1152}, {3, 4099}};

void expect_near_all(const std::vector<float>& actual, const std::vector<float>& expected, double tolerance,
                     const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_LE(std::abs(double(actual[i]) - expected[i]), tolerance * (1.0 + std::abs(double(expected[i]))))
        << what << " at " << i << ": " << actual[i] << " vs " << expected[i];
  }
}

// Every vector level's kernels (AVX-512, AVX2) against the scalar oracles.
class FastKernels : public ::testing::TestWithParam<IsaLevel> {
 protected:
  void SetUp() override {
    if (GetParam() > isa_level()) GTEST_SKIP() << "this CPU lacks " << isa_level_name(GetParam());
  }
};

TEST_P(FastKernels, UnaryActivationsMatchTheOracle) {
  const auto& fast = kernels::elementwise_kernels(GetParam());
  for (const auto& [rows, cols] : kShapes) {
    const std::vector<float> x = test::random_floats(static_cast<size_t>(rows * cols), uint32_t(cols), 4.0f);
    for (Unary op : {Unary::GeluTanh, Unary::GeluErf, Unary::Silu}) {
      std::vector<float> expected(x.size()), actual(x.size());
      kernels::kElementwiseScalar.unary(op, x.data(), expected.data(), rows * cols);
      fast.unary(op, x.data(), actual.data(), rows * cols);
      // exp to 2e-7; erf (Abramowitz-Stegun) to 1.5e-7 absolute.
      expect_near_all(actual, expected, 1e-6, "unary " + std::to_string(int(op)));
    }
  }
}

TEST_P(FastKernels, BinaryOpsModulateAndGatedResidualAreExact) {
  const auto& fast = kernels::elementwise_kernels(GetParam());
  for (const auto& [rows, cols] : kShapes) {
    const size_t n = static_cast<size_t>(rows * cols);
    const std::vector<float> a = test::random_floats(n, 1), b = test::random_floats(n, 2);
    const std::vector<float> row = test::random_floats(static_cast<size_t>(cols), 3);
    for (Binary op : {Binary::Add, Binary::Mul}) {
      for (bool broadcast : {false, true}) {
        std::vector<float> expected(n), actual(n);
        const float* rhs = broadcast ? row.data() : b.data();
        kernels::kElementwiseScalar.binary(op, a.data(), rhs, broadcast, expected.data(), rows, cols);
        fast.binary(op, a.data(), rhs, broadcast, actual.data(), rows, cols);
        ASSERT_EQ(actual, expected);
      }
    }
    std::vector<float> expected(n), actual(a);
    kernels::kElementwiseScalar.modulate(a.data(), row.data(), b.data(), expected.data(), rows, cols);
    fast.modulate(actual.data(), row.data(), b.data(), actual.data(), rows, cols);  // in place
    ASSERT_EQ(actual, expected);
    actual = a;
    kernels::kElementwiseScalar.gated_residual(a.data(), b.data(), row.data(), expected.data(), rows, cols);
    fast.gated_residual(actual.data(), b.data(), row.data(), actual.data(), rows, cols);
    ASSERT_EQ(actual, expected);
  }
}

TEST_P(FastKernels, NormsAndSoftmaxMatchTheOracle) {
  const auto& fast = kernels::row_kernels(GetParam());
  for (const auto& [rows, cols] : kShapes) {
    const size_t n = static_cast<size_t>(rows * cols);
    std::vector<float> x = test::random_floats(n, 5, 3.0f);
    for (float& v : x) v += 10.0f;  // an offset, as residual streams have
    const std::vector<float> gamma = test::random_floats(static_cast<size_t>(cols), 6);
    const std::vector<float> beta = test::random_floats(static_cast<size_t>(cols), 7);
    std::vector<float> expected(n), actual(n);
    for (bool affine : {false, true}) {
      kernels::kRowScalar.layer_norm(x.data(), affine ? gamma.data() : nullptr, affine ? beta.data() : nullptr, 1e-6f,
                                     expected.data(), rows, cols);
      fast.layer_norm(x.data(), affine ? gamma.data() : nullptr, affine ? beta.data() : nullptr, 1e-6f, actual.data(),
                      rows, cols);
      expect_near_all(actual, expected, 2e-5, "layer norm");
      kernels::kRowScalar.rms_norm(x.data(), affine ? gamma.data() : nullptr, 1e-6f, expected.data(), rows, cols);
      fast.rms_norm(x.data(), affine ? gamma.data() : nullptr, 1e-6f, actual.data(), rows, cols);
      expect_near_all(actual, expected, 2e-6, "rms norm");
    }
    kernels::kRowScalar.softmax(x.data(), expected.data(), rows, cols);
    fast.softmax(x.data(), actual.data(), rows, cols);
    expect_near_all(actual, expected, 2e-6, "softmax");
  }
}

TEST_P(FastKernels, GroupNormWithAndWithoutSiluMatchesTheOracle) {
  const auto& fast = kernels::row_kernels(GetParam());
  struct Case {
    int64_t batch, channels, spatial, groups;
  };
  for (const Case& c : {Case{1, 32, 1, 32}, Case{2, 64, 15, 32}, Case{1, 128, 17 * 17, 32}, Case{2, 8, 100, 2}}) {
    const size_t n = static_cast<size_t>(c.batch * c.channels * c.spatial);
    const std::vector<float> x = test::random_floats(n, 3, 2.0f);
    const std::vector<float> gamma = test::random_floats(static_cast<size_t>(c.channels), 4);
    const std::vector<float> beta = test::random_floats(static_cast<size_t>(c.channels), 5);
    for (bool silu : {false, true}) {
      std::vector<float> expected(n), actual(n);
      kernels::kRowScalar.group_norm(x.data(), gamma.data(), beta.data(), 1e-6f, silu, expected.data(), c.batch,
                                     c.channels, c.spatial, c.groups);
      fast.group_norm(x.data(), gamma.data(), beta.data(), 1e-6f, silu, actual.data(), c.batch, c.channels, c.spatial,
                      c.groups);
      expect_near_all(actual, expected, 2e-5, "group norm");
    }
  }
}

TEST(KernelOracles, GroupNormOfOneGroupIsALayerNormOverItsChannels) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};  // 2 channels x 3 pixels, one group: mean 3.5, variance 35/12
  std::vector<float> y(6);
  kernels::kRowScalar.group_norm(x.data(), nullptr, nullptr, 0.0f, false, y.data(), 1, 2, 3, 1);
  EXPECT_NEAR(y[0], -2.5 / std::sqrt(35.0 / 12), 1e-6);
  EXPECT_NEAR(y[5], 2.5 / std::sqrt(35.0 / 12), 1e-6);
}

struct AttentionCase {
  int64_t batch, tokens, heads, dim;
};

// Random q, k, v of the case's shape through `kernel` and through the scalar
// oracle: {actual, expected}.
std::pair<std::vector<float>, std::vector<float>> attention_and_oracle(const AttentionCase& c, kernels::AttentionFn kernel) {
  const size_t width = static_cast<size_t>(c.heads * c.dim);
  const std::vector<float> qkv = test::random_floats(static_cast<size_t>(c.batch * c.tokens) * 3 * width,
                                                     static_cast<uint32_t>(c.tokens), 2.0f);
  std::vector<float> expected(static_cast<size_t>(c.batch * c.tokens) * width), actual(expected.size());
  kernels::f32_attention__scalar({qkv.data(), expected.data(), c.batch, c.tokens, c.heads, c.dim});
  kernel({qkv.data(), actual.data(), c.batch, c.tokens, c.heads, c.dim});
  return {actual, expected};
}

TEST_P(FastKernels, StreamingAttentionEqualsTheNaiveOneFrom1To5000Tokens) {
  const kernels::AttentionFn fast = kernels::attention_kernel(GetParam(), kernels::AttentionMath::F32);
  std::vector<AttentionCase> cases;
  for (int64_t t : {1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 100, 257, 1000}) cases.push_back({2, t, 2, 72});
  cases.push_back({1, 2049, 1, 64});
  cases.push_back({1, 5000, 1, 16});
  for (const AttentionCase& c : cases) {
    const auto [actual, expected] = attention_and_oracle(c, fast);
    expect_near_all(actual, expected, 2e-5, "attention over " + std::to_string(c.tokens) + " tokens");
  }
}

// bf16 products: each input rounded to 8 significant bits, so the outputs
// stray from the f32 oracle by about 2^-9 of their scale, not more; odd head
// sizes exercise the padding of the last pair.
TEST(KernelOracles, Bf16AttentionStaysWithinBf16RoundingOfTheOracle) {
  if (isa_level() < IsaLevel::Avx512 || !cpu_features().avx512_bf16) GTEST_SKIP() << "needs AVX512-BF16";
  const kernels::AttentionFn bf16 = kernels::attention_kernel(IsaLevel::Avx512, kernels::AttentionMath::Bf16Products);
  ASSERT_EQ(bf16, kernels::bf16_attention_flash_8x64__avx512bf16);
  std::vector<AttentionCase> cases;
  for (int64_t t : {1, 2, 3, 17, 63, 64, 65, 257, 1024}) cases.push_back({2, t, 2, 72});
  cases.push_back({1, 100, 3, 71});
  cases.push_back({1, 33, 1, 512});
  for (const AttentionCase& c : cases) {
    const auto [actual, expected] = attention_and_oracle(c, bf16);
    double worst = 0, scale = 0, squared = 0, squared_ref = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      worst = std::max(worst, std::abs(double(actual[i]) - expected[i]));
      scale = std::max(scale, std::abs(double(expected[i])));
      squared += (double(actual[i]) - expected[i]) * (double(actual[i]) - expected[i]);
      squared_ref += double(expected[i]) * expected[i];
    }
    const std::string what = std::to_string(c.tokens) + " tokens, head_dim " + std::to_string(c.dim);
    EXPECT_LT(worst / scale, 2e-2) << what;
    EXPECT_LT(std::sqrt(squared / squared_ref), 8e-3) << what;
    if (c.tokens > 1) {
      EXPECT_GT(worst, 0.0) << what << ": bf16 rounding should show";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, FastKernels, ::testing::Values(IsaLevel::Avx512, IsaLevel::Avx2),
                         [](const ::testing::TestParamInfo<IsaLevel>& info) { return isa_level_name(info.param); });

TEST(KernelOracles, AttentionOverOneKeyReturnsItsValue) {
  // One token: softmax of a single score is 1, so the output is v.
  const std::vector<float> qkv = {0.5f, -1.0f, 2.0f, 3.0f, 7.0f, -8.0f};  // q, k, v with head_dim 2
  float out[2];
  kernels::f32_attention__scalar({qkv.data(), out, 1, 1, 1, 2});
  EXPECT_EQ(out[0], 7.0f);
  EXPECT_EQ(out[1], -8.0f);
}

TEST(KernelOracles, MatchHandComputedValues) {
  float y[3];
  const float x[3] = {1.0f, -1.0f, 0.0f};
  kernels::kElementwiseScalar.unary(Unary::GeluErf, x, y, 3);
  EXPECT_NEAR(y[0], 0.8413447f, 1e-6);
  EXPECT_NEAR(y[1], -0.1586553f, 1e-6);
  EXPECT_EQ(y[2], 0.0f);
  const float row[4] = {1, 2, 3, 4};
  float out[4];
  kernels::kRowScalar.layer_norm(row, nullptr, nullptr, 0.0f, out, 1, 4);  // mean 2.5, variance 1.25
  EXPECT_NEAR(out[0], -1.5f / std::sqrt(1.25f), 1e-6);
  kernels::kRowScalar.softmax(row, out, 1, 4);
  EXPECT_NEAR(out[3], std::exp(4.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(4.0)), 1e-7);
}

}  // namespace
}  // namespace tiledraw
