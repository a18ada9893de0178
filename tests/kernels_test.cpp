// Each CPU op's fast kernel against its scalar oracle, odd sizes included.
#include <gtest/gtest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

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
    for (Unary op : {Unary::GeluTanh, Unary::GeluErf, Unary::Silu, Unary::QuickGelu}) {
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

INSTANTIATE_TEST_SUITE_P(Kernels, FastKernels, ::testing::Values(IsaLevel::Avx512, IsaLevel::Avx2),
                         [](const ::testing::TestParamInfo<IsaLevel>& info) { return isa_level_name(info.param); });

// The attention kernels this CPU runs, each against the scalar oracle.
struct AttentionKernel {
  std::string name;
  kernels::AttentionFn run;
  bool bf16;  // bf16 products: held to bf16 rounding, not to f32's
};

std::vector<AttentionKernel> fast_attention_kernels() {
  std::vector<AttentionKernel> list;
  if (isa_level() >= IsaLevel::Avx2) {
    list.push_back({"f32 avx2", kernels::attention_kernel(IsaLevel::Avx2, kernels::AttentionMath::F32), false});
  }
  if (isa_level() >= IsaLevel::Avx512) {
    list.push_back({"f32 avx512", kernels::attention_kernel(IsaLevel::Avx512, kernels::AttentionMath::F32), false});
  }
  if (isa_level() >= IsaLevel::Avx512 && cpu_features().avx512_bf16) {
    const kernels::AttentionFn bf16 = kernels::attention_kernel(IsaLevel::Avx512, kernels::AttentionMath::Bf16Products);
    EXPECT_EQ(bf16, kernels::bf16_attention_flash_8x64__avx512bf16);
    list.push_back({"bf16 avx512bf16", bf16, true});
  }
  return list;
}

struct AttentionCase {
  int64_t batch, q_tokens, kv_tokens, heads, head_dim;
  bool causal;
  std::string name() const {
    return std::to_string(batch) + " x " + std::to_string(q_tokens) + " queries x " + std::to_string(kv_tokens) +
           " keys, " + std::to_string(heads) + " heads of " + std::to_string(head_dim) + (causal ? ", causal" : "");
  }
};

// A case's q, k and v as column slices of wider buffers whose other floats
// are NaN, so that a kernel reading outside its slices shows in its output:
// q in [tokens, margin | q | margin...], k and v side by side as a stacked
// projection [tokens, margin | k | margin | v]; the output a slice too, its
// other floats a sentinel that must survive. Odd margins misalign every row.
class StridedAttention {
 public:
  static constexpr int64_t kMargin = 3;
  static constexpr float kSentinel = 1234.5f;

  StridedAttention(const AttentionCase& c, uint32_t seed) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const int64_t width = c.heads * c.head_dim, q_rows = c.batch * c.q_tokens, kv_rows = c.batch * c.kv_tokens;
    const int64_t q_stride = width + kMargin, kv_stride = 2 * (width + kMargin);
    q_.assign(static_cast<size_t>(q_rows * q_stride + kMargin), nan);
    kv_.assign(static_cast<size_t>(kv_rows * kv_stride + kMargin), nan);
    out_.assign(q_.size(), kSentinel);
    const std::vector<float> q = test::random_floats(static_cast<size_t>(q_rows * width), seed, 2.0f);
    const std::vector<float> kv = test::random_floats(static_cast<size_t>(kv_rows * 2 * width), seed + 1, 2.0f);
    for (int64_t row = 0; row < q_rows; ++row) {
      std::copy_n(&q[static_cast<size_t>(row * width)], width, &q_[static_cast<size_t>(row * q_stride + kMargin)]);
    }
    for (int64_t row = 0; row < kv_rows; ++row) {
      const float* k = &kv[static_cast<size_t>(2 * row * width)];
      std::copy_n(k, width, &kv_[static_cast<size_t>(row * kv_stride + kMargin)]);
      std::copy_n(k + width, width, &kv_[static_cast<size_t>(row * kv_stride + 2 * kMargin + width)]);
    }
    args_ = {.q = q_.data() + kMargin, .k = kv_.data() + kMargin, .v = kv_.data() + 2 * kMargin + width,
             .out = out_.data() + kMargin, .q_stride = q_stride, .k_stride = kv_stride, .v_stride = kv_stride,
             .out_stride = q_stride, .batch = c.batch, .q_tokens = c.q_tokens, .kv_tokens = c.kv_tokens,
             .heads = c.heads, .head_dim = c.head_dim, .causal = c.causal};
  }

  // Runs `kernel` on a fresh output; returns its slice, row after row, and
  // fails the test if the kernel wrote outside it.
  std::vector<float> run(kernels::AttentionFn kernel, const std::string& what) {
    std::fill(out_.begin(), out_.end(), kSentinel);
    kernel(args_);
    std::vector<float> slice;
    int64_t written_outside = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(out_.size()); ++i) {
      if (i % args_.out_stride >= kMargin && i < args_.batch * args_.q_tokens * args_.out_stride) {
        slice.push_back(out_[static_cast<size_t>(i)]);
      } else {
        written_outside += out_[static_cast<size_t>(i)] != kSentinel;
      }
    }
    EXPECT_EQ(written_outside, 0) << what << " wrote outside its output";
    return slice;
  }

  const kernels::AttentionArgs& args() const { return args_; }

 private:
  std::vector<float> q_, kv_, out_;
  kernels::AttentionArgs args_{};
};

// bf16 products: each input rounded to 8 significant bits, so the outputs
// stray from the f32 oracle by about 2^-9 of their scale, not more.
void expect_within_bf16_rounding(const std::vector<float>& actual, const std::vector<float>& expected,
                                 const std::string& what, bool rounding_shows) {
  ASSERT_EQ(actual.size(), expected.size());
  double worst = 0, scale = 0, squared = 0, squared_ref = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(std::isfinite(actual[i])) << what << " at " << i;
    worst = std::max(worst, std::abs(double(actual[i]) - expected[i]));
    scale = std::max(scale, std::abs(double(expected[i])));
    squared += (double(actual[i]) - expected[i]) * (double(actual[i]) - expected[i]);
    squared_ref += double(expected[i]) * expected[i];
  }
  EXPECT_LT(worst / scale, 2e-2) << what;
  EXPECT_LT(std::sqrt(squared / squared_ref), 8e-3) << what;
  if (rounding_shows) {
    EXPECT_GT(worst, 0.0) << what << ": bf16 rounding should show";
  }
}

// Queries and keys from 1 to 4096 on each side, mostly unequal (cross-
// attention), every head size the models use plus odd ones, causal or not,
// batch 1 and 2, one head and several. With few (batch, head) pairs, as in
// most cases, the threads share each head; the cases with 16 give each of up
// to four threads whole heads.
TEST(AttentionKernels, MatchTheOracleFrom1To4096QueriesAndKeysOnStridedSlices) {
  const std::vector<AttentionKernel> fast = fast_attention_kernels();
  if (fast.empty()) GTEST_SKIP() << "no vector kernel at this ISA level";
  const std::vector<AttentionCase> cases = {
      {1, 1, 1, 1, 64, false},      {2, 1, 4096, 2, 40, false},  {1, 4096, 1, 3, 72, true},
      {2, 7, 1024, 1, 80, true},    {1, 1024, 7, 3, 128, false}, {2, 63, 65, 3, 71, false},
      {1, 65, 63, 2, 40, true},     {2, 64, 77, 1, 64, true},    {1, 77, 154, 3, 72, false},
      {2, 154, 77, 8, 40, true},    {1, 255, 64, 1, 128, false}, {2, 64, 255, 3, 71, true},
      {1, 7, 7, 2, 40, true},       {2, 4096, 77, 3, 40, false}, {1, 77, 4096, 1, 64, false},
      {2, 255, 1024, 2, 72, true},  {1, 1024, 255, 3, 80, false}, {2, 1024, 1024, 8, 64, true},
      {1, 4096, 4096, 1, 40, false}, {1, 4096, 1024, 1, 71, true}, {1, 100, 100, 1, 512, false},
      {1, 33, 20, 2, 5, true}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const AttentionCase& c = cases[i];
    StridedAttention attention(c, static_cast<uint32_t>(100 + i));
    const std::vector<float> expected = attention.run(kernels::f32_attention__scalar, "the oracle");
    for (const AttentionKernel& kernel : fast) {
      const std::string what = kernel.name + ", " + c.name();
      const std::vector<float> actual = attention.run(kernel.run, what);
      if (kernel.bf16) {
        expect_within_bf16_rounding(actual, expected, what, c.kv_tokens > 1);
      } else {
        expect_near_all(actual, expected, 2e-5, what);
      }
    }
  }
}

// Each query's sums run in the same order however the threads share the
// work: one thread (whole heads, when there are eight) and three (each head's
// keys and query blocks shared out) give the same bits.
TEST(AttentionKernels, ResultsDoNotDependOnHowThreadsShareTheWork) {
  const std::vector<AttentionKernel> fast = fast_attention_kernels();
  if (fast.empty()) GTEST_SKIP() << "no vector kernel at this ISA level";
  const int threads = omp_get_max_threads();
  for (const AttentionCase& c : {AttentionCase{1, 300, 200, 8, 72, true}, AttentionCase{1, 1000, 1000, 1, 40, false}}) {
    StridedAttention attention(c, 7);
    for (const AttentionKernel& kernel : fast) {
      omp_set_num_threads(1);
      const std::vector<float> one = attention.run(kernel.run, kernel.name);
      omp_set_num_threads(3);
      const std::vector<float> three = attention.run(kernel.run, kernel.name);
      omp_set_num_threads(threads);
      EXPECT_EQ(one, three) << kernel.name << ", " << c.name();
    }
  }
}

// With zero queries every visible key scores the same, so query i averages
// v[0..min(i, kv_tokens - 1)]; the last key's 1000s show any leak to earlier
// queries. With random queries, query 0 still sees key 0 only and returns
// v[0] exactly (its probability is exp(0) = 1), bf16 included: v[0] is
// representable.
TEST(AttentionKernels, CausalMaskHidesLaterKeysAsComputedByHand) {
  std::vector<AttentionKernel> candidates = fast_attention_kernels();
  candidates.insert(candidates.begin(), AttentionKernel{"the oracle", kernels::f32_attention__scalar, false});
  const std::vector<float> k = {0.5f, -1.0f, 2.0f, 3.0f, -1.5f, 0.25f};  // 3 keys of head_dim 2
  const std::vector<float> v = {7.0f, -8.0f, 1.0f, 4.0f, 1000.0f, 1000.0f};
  const std::vector<std::vector<float>> means = {{7.0f, -8.0f}, {4.0f, -2.0f}, {1008.0f / 3, 996.0f / 3}};
  for (const int64_t queries : {2, 5}) {  // fewer and more queries than keys
    const std::vector<float> zero(static_cast<size_t>(2 * queries), 0.0f);
    const std::vector<float> random = test::random_floats(zero.size(), 3, 2.0f);
    for (const AttentionKernel& kernel : candidates) {
      std::vector<float> out(zero.size());
      kernels::AttentionArgs args{.q = zero.data(), .k = k.data(), .v = v.data(), .out = out.data(), .q_stride = 2,
                                  .k_stride = 2, .v_stride = 2, .out_stride = 2, .batch = 1, .q_tokens = queries,
                                  .kv_tokens = 3, .heads = 1, .head_dim = 2, .causal = true};
      kernel.run(args);
      for (int64_t i = 0; i < queries; ++i) {
        for (int64_t d = 0; d < 2; ++d) {
          const float expected = means[static_cast<size_t>(std::min<int64_t>(i, 2))][static_cast<size_t>(d)];
          EXPECT_NEAR(out[static_cast<size_t>(2 * i + d)], expected, 1e-6 * std::abs(expected))
              << kernel.name << ", " << queries << " queries: query " << i << " dimension " << d;
        }
      }
      args.q = random.data();
      kernel.run(args);
      EXPECT_EQ(out[0], 7.0f) << kernel.name;
      EXPECT_EQ(out[1], -8.0f) << kernel.name;
    }
  }
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
