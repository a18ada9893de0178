// Every matmul backend against the scalar oracle, on the awkward shapes and
// values a diffusion model produces, plus the program cache.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <chrono>
#include <thread>

#include "accel/amx/amx_backend.h"
#include "accel/backends.h"
#include "accel/panel_weight.h"
#include "amx_emulation.h"
#include "kernels/activation/activation.h"
#include "kernels/gemm/f32_gemm.h"
#include "test_util.h"
#include "tiledraw/accel.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw {
namespace {

struct Problem {
  int64_t m, n, k;
  std::vector<float> x;       // [m, k]
  std::vector<int8_t> q;      // [n, k]
  std::vector<float> scale;   // [n]
  std::vector<float> bias;    // [n]
  std::vector<float> y_init;  // [m, n], what y holds before an accumulating run
};

Problem random_problem(int64_t m, int64_t n, int64_t k, uint32_t seed) {
  Problem p{m, n, k, test::random_floats(static_cast<size_t>(m * k), seed), {}, {}, {}, {}};
  const std::vector<float> w = test::random_floats(static_cast<size_t>(n * k), seed + 1, 1.0f / std::sqrt(float(k)));
  p.q.resize(w.size());
  p.scale.resize(static_cast<size_t>(n));
  quantize_rows_8bit_s(w.data(), static_cast<size_t>(n), static_cast<size_t>(k), p.q.data(), p.scale.data());
  p.bias = test::random_floats(static_cast<size_t>(n), seed + 2);
  p.y_init = test::random_floats(static_cast<size_t>(m * n), seed + 3);
  return p;
}

std::vector<float> run(const Accelerator& accel, const Problem& p, const Epilogue& e, int64_t ldy_pad = 0) {
  const std::unique_ptr<PackedWeight> w = accel.pack({p.q.data(), p.scale.data(), p.n, p.k});
  const std::unique_ptr<Program> program = accel.prepare({ProgramCache::bucket_m(p.m), p.n, p.k, e});
  QuantizedActivation x;
  x.quantize(p.x.data(), p.m, p.k, p.k);
  const int64_t ldy = p.n + ldy_pad;
  std::vector<float> y(static_cast<size_t>(p.m * ldy), -7.0f);
  for (int64_t r = 0; r < p.m; ++r) std::copy_n(&p.y_init[r * p.n], p.n, &y[r * ldy]);
  accel.run(*program, {&x, w.get(), p.bias.data(), y.data(), ldy});
  std::vector<float> out;
  for (int64_t r = 0; r < p.m; ++r) out.insert(out.end(), &y[r * ldy], &y[r * ldy] + p.n);
  for (int64_t r = 0; r < p.m && ldy_pad > 0; ++r) {
    for (int64_t c = p.n; c < ldy; ++c) EXPECT_EQ(y[r * ldy + c], -7.0f) << "wrote past the row at " << r;
  }
  return out;
}

class Backend : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why;
    if (GetParam() == "amx-emulated") {
      if (isa_level() < IsaLevel::Avx512) GTEST_SKIP() << "the AMX kernel's epilogue needs AVX-512";
      accel_ = accel::make_amx_backend_with(test::emulated_amx_tasks(), "AMX kernel on emulated tiles", false);
    } else {
      accel_ = make_accelerator(GetParam(), &why);
    }
    if (!accel_) GTEST_SKIP() << GetParam() << " cannot run here: " << why;
    oracle_ = make_accelerator("ref");
  }
  // Pre-activation sums can cancel, so the bound scales with the largest term.
  void expect_close(const Problem& p, const Epilogue& e, double tolerance) {
    const std::vector<float> expected = run(*oracle_, p, e);
    const std::vector<float> actual = run(*accel_, p, e, 5);
    double worst = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      const double err = std::abs(double(actual[i]) - expected[i]) / (1.0 + std::abs(double(expected[i])));
      worst = std::max(worst, err);
      ASSERT_LE(err, tolerance) << accel_->kernel() << " m=" << p.m << " n=" << p.n << " k=" << p.k << " at (" << i / p.n
                                << ", " << i % p.n << "): " << actual[i] << " vs " << expected[i];
    }
    worst_ = std::max(worst_, worst);
  }
  void TearDown() override {
    if (accel_) RecordProperty("worst_relative_error", std::to_string(worst_));
  }
  std::unique_ptr<Accelerator> accel_, oracle_;
  double worst_ = 0;
};

const std::vector<Epilogue> kEpilogues = {
    {false, Activation::None, false},    {true, Activation::None, false},  {true, Activation::GeluTanh, false},
    {false, Activation::Silu, true},     {true, Activation::GeluTanh, true}, {true, Activation::None, true},
};

// Relative to 1 + |y|, for the activations' exp approximation (worst seen 4.7e-7).
// Without an activation every backend follows the oracle's order of float
// operations, so the result must be identical.
constexpr double kTolerance = 2e-6;
double tolerance(const Epilogue& e) { return e.activation == Activation::None ? 0.0 : kTolerance; }

TEST_P(Backend, MatchesTheOracleOnAwkwardShapesAndEveryEpilogue) {
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1152}, {7, 17, 1000}, {33, 1152, 1152}, {250, 17, 4608}, {1, 3456, 1152},
      {250, 130, 1000}, {16, 64, 64}, {7, 65, 3}, {64, 1152, 4608}, {250, 1152, 1152},
  };
  uint32_t seed = 10;
  for (const auto& [m, n, k] : shapes) {
    const Problem p = random_problem(m, n, k, seed += 10);
    for (const Epilogue& e : kEpilogues) expect_close(p, e, tolerance(e));
  }
}

TEST_P(Backend, IntegerSumsAreExact) {
  // Scales of exactly 1 (rows that reach +-127) make y the int32 sum itself; K = 1000
  // keeps every sum below 2^24, where float holds integers exactly.
  const int64_t m = 37, n = 70, k = 1000;
  Problem p{m, n, k, {}, {}, std::vector<float>(n, 1.0f), std::vector<float>(n), std::vector<float>(m * n)};
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> value(-127, 127);
  for (int64_t i = 0; i < m * k; ++i) p.x.push_back(float(i % k == 0 ? 127 : value(rng)));
  for (int64_t i = 0; i < n * k; ++i) p.q.push_back(static_cast<int8_t>(i % 3 == 0 ? -127 : value(rng)));
  const std::vector<float> y = run(*accel_, p, {});
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      int64_t sum = 0;
      for (int64_t i = 0; i < k; ++i) sum += int64_t(p.x[r * k + i]) * p.q[c * k + i];
      ASSERT_EQ(y[r * n + c], float(sum)) << "row " << r << " column " << c;
    }
  }
}

TEST_P(Backend, HandlesZeroRowsOutliersAndSaturatedWeights) {
  Problem p = random_problem(9, 40, 300, 77);
  std::fill_n(p.x.begin(), 300, 0.0f);       // row 0: all zero
  p.x[2 * 300 + 17] = 1e6f;                  // row 2: one huge value
  std::fill_n(p.q.begin(), 300, int8_t{-127});  // weight row 0: all -127
  std::fill_n(p.q.begin() + 300, 300, int8_t{127});
  for (const Epilogue& e : kEpilogues) expect_close(p, e, tolerance(e));
  const std::vector<float> y = run(*accel_, p, {true, Activation::None, false});
  for (int64_t c = 0; c < 40; ++c) EXPECT_EQ(y[c], p.bias[c]) << "a zero row gives the bias alone";
}

TEST_P(Backend, RefusesMinus128AndMismatchedOperands) {
  const Problem p = random_problem(4, 8, 64, 3);
  std::vector<int8_t> bad = p.q;
  bad[70] = -128;
  EXPECT_THAT([&] { accel_->pack({bad.data(), p.scale.data(), 8, 64}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("holds -128 at row 1")));
  const auto w = accel_->pack({p.q.data(), p.scale.data(), 8, 64});
  const auto program = accel_->prepare({16, 8, 32, {}});
  QuantizedActivation x;
  x.quantize(p.x.data(), 4, 32, 64);
  std::vector<float> y(32);
  EXPECT_THROW(accel_->run(*program, {&x, w.get(), nullptr, y.data(), 8}), Error);
}

TEST_P(Backend, RunsStoredPanelsAsTheRowsTheyHoldAlignedOrNot) {
  const Problem p = random_problem(33, 192, 320, 41);
  const std::vector<uint8_t> panels = test::stored_panels(p.q, p.n, p.k);
  accel::AlignedArray<uint8_t> buffer(panels.size() + 64);
  const Epilogue e{true, Activation::None, false};
  const std::vector<float> expected = run(*oracle_, p, e);
  for (const size_t offset : {size_t{0}, size_t{1}}) {
    std::copy(panels.begin(), panels.end(), buffer.data() + offset);
    const WeightView view{nullptr, p.scale.data(), p.n, p.k, buffer.data() + offset};
    const std::unique_ptr<PackedWeight> w = accel_->pack(view);
    const std::unique_ptr<Program> program = accel_->prepare({ProgramCache::bucket_m(p.m), p.n, p.k, e});
    QuantizedActivation x;
    x.quantize(p.x.data(), p.m, p.k, p.k);
    std::vector<float> y(static_cast<size_t>(p.m * p.n));
    accel_->run(*program, {&x, w.get(), p.bias.data(), y.data(), p.n});
    EXPECT_EQ(y, expected) << "panels at offset " << offset;
    // Our panel backends read aligned panels where they lie; others keep a copy.
    const bool panel_backend = GetParam() == "vnni" || GetParam().starts_with("amx");
    EXPECT_EQ(w->reads_source(), panel_backend && offset == 0 && isa_level() >= IsaLevel::Avx512) << "offset " << offset;
  }
  std::copy(panels.begin(), panels.end(), buffer.data());
  buffer.data()[((1 * (p.k / 4) + 5) * 64 + 7) * 4 + 2] = 0;  // -128 at row 64 + 7
  EXPECT_THAT([&] { accel_->pack({nullptr, p.scale.data(), p.n, p.k, buffer.data()}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("holds -128 at row 71")));
}

// Runs `run(input, y, times)` on two inputs alone, then 40 times each on two
// threads at once: each thread must get what it got alone.
template <typename Input, typename Run>
void expect_two_threads_get_what_each_gets_alone(const Input& a, const Input& b, Run run) {
  std::vector<float> alone_a, alone_b, together_a, together_b;
  run(a, alone_a, 1);
  run(b, alone_b, 1);
  std::thread first([&] { run(a, together_a, 40); });
  std::thread second([&] { run(b, together_b, 40); });
  first.join();
  second.join();
  EXPECT_EQ(together_a, alone_a);
  EXPECT_EQ(together_b, alone_b);
}

// Two generations on one model run the same program at once from two threads
// (the server's workers). oneDNN's own scratchpad, one per primitive, made
// them overwrite each other's partial sums; each thread must get what it gets alone.
TEST_P(Backend, TwoThreadsRunningOneProgramGetWhatEachGetsAlone) {
  const Problem a = random_problem(256, 320, 1280, 21), b = random_problem(256, 320, 1280, 23);
  const auto w = accel_->pack({a.q.data(), a.scale.data(), a.n, a.k});
  const Epilogue epilogue{true, Activation::None, false};
  const auto program = accel_->prepare({ProgramCache::bucket_m(a.m), a.n, a.k, epilogue});
  const auto run_on = [&](const Problem& p, std::vector<float>& y, int times) {
    QuantizedActivation x;
    x.quantize(p.x.data(), p.m, p.k, p.k);
    y.assign(static_cast<size_t>(p.m * p.n), 0.0f);
    for (int i = 0; i < times; ++i) accel_->run(*program, {&x, w.get(), a.bias.data(), y.data(), p.n});
  };
  expect_two_threads_get_what_each_gets_alone(a, b, run_on);
}

// The float layers' oneDNN matmul, cached per shape for the whole process, the same way.
TEST(F32GemmOnednn, TwoThreadsRunningOneShapeGetWhatEachGetsAlone) {
  constexpr int64_t m = 1024, k = 576, n = 64;
  const std::vector<float> w = test::random_floats(n * k, 31), bias = test::random_floats(n, 32);
  const std::vector<float> xa = test::random_floats(m * k, 33), xb = test::random_floats(m * k, 34);
  const auto run_on = [&](const std::vector<float>& x, std::vector<float>& y, int times) {
    y.assign(m * n, 0.0f);
    for (int i = 0; i < times; ++i) kernels::f32_gemm_onednn(x.data(), m, k, w.data(), n, bias.data(), y.data(), n);
  };
  expect_two_threads_get_what_each_gets_alone(xa, xb, run_on);
}

INSTANTIATE_TEST_SUITE_P(Accel, Backend, ::testing::Values("vnni", "onednn", "amx", "amx-emulated"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(ActivationOracle, MatchesHandComputedValues) {
  EXPECT_NEAR(kernels::activate(Activation::GeluTanh, 1.0f), 0.8411920f, 1e-6);
  EXPECT_NEAR(kernels::activate(Activation::GeluTanh, -3.0f), -0.0036373f, 1e-6);
  EXPECT_NEAR(kernels::activate(Activation::Silu, 2.0f), 1.7615942f, 1e-6);
  EXPECT_EQ(kernels::activate(Activation::None, -2.5f), -2.5f);
}

TEST(ProgramCache, BucketsTokenCountsThatDifferALittle) {
  EXPECT_EQ(ProgramCache::bucket_m(1), 16);
  EXPECT_EQ(ProgramCache::bucket_m(16), 16);
  EXPECT_EQ(ProgramCache::bucket_m(17), 32);
  EXPECT_EQ(ProgramCache::bucket_m(240), 256);
  EXPECT_EQ(ProgramCache::bucket_m(250), 256);
  EXPECT_EQ(ProgramCache::bucket_m(256), 256);
  EXPECT_EQ(ProgramCache::bucket_m(257), 320);
  EXPECT_EQ(ProgramCache::bucket_m(1024), 1024);
  EXPECT_EQ(ProgramCache::bucket_m(1025), 1280);
  for (int64_t m = 1; m < 5000; ++m) {
    ASSERT_GE(ProgramCache::bucket_m(m), m);
    ASSERT_LE(ProgramCache::bucket_m(m), std::max<int64_t>((m + 15) / 16 * 16, m + m / 4 + 1)) << m;
  }
}

TEST(ProgramCache, CountsHitsAndMissesAndSharesABucket) {
  const auto accel = make_accelerator("ref");
  ProgramCache cache;
  const Program& a = cache.get(*accel, {250, 64, 128, {}});
  const Program& b = cache.get(*accel, {240, 64, 128, {}});
  cache.get(*accel, {250, 64, 128, {true, Activation::None, false}});
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.shape().m, 256);
  const ProgramCache::Stats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.programs, 2u);
  EXPECT_GE(s.prepare_seconds, 0.0);
}

TEST(ProgramCache, ServesTwoThreadsAtOnce) {
  std::string why;
  const auto accel = make_accelerator("auto", &why);
  const auto oracle = make_accelerator("ref");
  ProgramCache cache;
  const Problem p = random_problem(100, 96, 320, 9);
  const auto w = accel->pack({p.q.data(), p.scale.data(), p.n, p.k});
  const std::vector<float> expected = run(*oracle, p, {});
  auto worker = [&](int64_t rows, std::vector<float>& y) {
    QuantizedActivation scratch;
    y.assign(static_cast<size_t>(rows * p.n), 0.0f);
    for (int i = 0; i < 20; ++i) {
      linear_8bit_s(*accel, cache, p.x.data(), rows, p.k, *w, nullptr, {}, y.data(), p.n, scratch);
    }
  };
  std::vector<float> y1, y2;
  std::thread t1(worker, 100, std::ref(y1));
  std::thread t2(worker, 37, std::ref(y2));
  t1.join();
  t2.join();
  for (size_t i = 0; i < y1.size(); ++i) ASSERT_NEAR(y1[i], expected[i], kTolerance * (1 + std::abs(expected[i])));
  for (size_t i = 0; i < y2.size(); ++i) ASSERT_NEAR(y2[i], expected[i], kTolerance * (1 + std::abs(expected[i])));
  EXPECT_EQ(cache.stats().hits + cache.stats().misses, 40u);
}

TEST(Accelerators, TheDefaultIsAmxWheneverTheOsGrantsIt) {
  if (std::getenv("TILEDRAW_ACCEL")) GTEST_SKIP() << "TILEDRAW_ACCEL overrides the default";
  std::string why;
  const std::string chosen = preferred_accelerator_name(&why);
  const std::string preferred_kernel = make_accelerator(chosen)->kernel();
  EXPECT_THAT(make_accelerator("auto")->kernel(), ::testing::HasSubstr(preferred_kernel));
  if (cpu_features().amx_int8) {
    EXPECT_EQ(chosen, "amx") << why;
  } else {
    EXPECT_EQ(chosen, isa_level() >= IsaLevel::Avx2 ? "vnni" : "ref") << why;
  }
  EXPECT_FALSE(why.empty());
  EXPECT_THROW(make_accelerator("tpu"), Error);
}

// Stands in for a backend: the oracle, made slower by a fixed delay per run.
class DelayedRef final : public Accelerator {
 public:
  explicit DelayedRef(std::chrono::microseconds delay, int* runs = nullptr)
      : ref_(make_accelerator("ref")), delay_(delay), runs_(runs) {}
  std::string_view name() const override { return "delayed"; }
  std::string kernel() const override { return "ref + " + std::to_string(delay_.count()) + " us"; }
  bool supports(const MatmulShape& s) const override { return ref_->supports(s); }
  std::unique_ptr<PackedWeight> pack(const WeightView& w) const override { return ref_->pack(w); }
  std::unique_ptr<Program> prepare(const MatmulShape& s) const override { return ref_->prepare(s); }
  void run(const Program& p, const MatmulArgs& a) const override {
    if (runs_) ++*runs_;
    std::this_thread::sleep_for(delay_);
    ref_->run(p, a);
  }

 private:
  std::unique_ptr<Accelerator> ref_;
  std::chrono::microseconds delay_;
  int* runs_;
};

TEST(Accelerators, AutoKeepsTheFasterCandidatePerShapeAndStillComputesRight) {
  std::vector<std::unique_ptr<Accelerator>> candidates;
  candidates.push_back(std::make_unique<DelayedRef>(std::chrono::microseconds(20000)));
  candidates.push_back(std::make_unique<DelayedRef>(std::chrono::microseconds(0)));
  const auto chooser = accel::make_auto_backend(std::move(candidates), "");
  EXPECT_THAT(chooser->kernel(), ::testing::HasSubstr("[ref + 20000 us] [ref + 0 us]"));
  const Problem p = random_problem(5, 20, 40, 4);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<float> y = run(*chooser, p, {true, Activation::None, false});
  const auto first = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(y, run(*make_accelerator("ref"), p, {true, Activation::None, false}));
  const auto again = std::chrono::steady_clock::now();
  run(*chooser, p, {});
  EXPECT_LT(std::chrono::steady_clock::now() - again, std::chrono::milliseconds(15))
      << "the shape was timed once (" << std::chrono::duration<double>(first).count() << " s); runs go to the faster";
}

// A slow and a fast candidate that count their runs.
struct CountedCandidates {
  int slow_runs = 0, fast_runs = 0;
  std::unique_ptr<Accelerator> make_auto(const std::string& choices_file) {
    slow_runs = fast_runs = 0;
    std::vector<std::unique_ptr<Accelerator>> candidates;
    candidates.push_back(std::make_unique<DelayedRef>(std::chrono::microseconds(20000), &slow_runs));
    candidates.push_back(std::make_unique<DelayedRef>(std::chrono::microseconds(0), &fast_runs));
    return accel::make_auto_backend(std::move(candidates), choices_file);
  }
};

TEST(Accelerators, AutoRemembersItsChoicesForLaterProcessesAndSurvivesABadFile) {
  const test::TempDir dir;
  const std::string file = dir.file("cache/auto-choices.json");
  const Problem p = random_problem(5, 20, 40, 4);
  const std::vector<float> expected = run(*make_accelerator("ref"), p, {true, Activation::None, false});
  CountedCandidates c;
  EXPECT_EQ(run(*c.make_auto(file), p, {true, Activation::None, false}), expected);
  EXPECT_GT(c.slow_runs, 0) << "a new shape is timed on both candidates";
  std::string text = test::read_text(file);
  EXPECT_THAT(text, ::testing::HasSubstr("\"20 x 40\": \"ref + 0 us\""));

  EXPECT_EQ(run(*c.make_auto(file), p, {true, Activation::None, false}), expected);
  EXPECT_EQ(c.slow_runs, 0) << "a remembered shape is not timed again";
  EXPECT_EQ(c.fast_runs, 1);

  // A later process follows the file even where it names the slower kernel.
  text.replace(text.find("\"ref + 0 us\""), 12, "\"ref + 20000 us\"");
  test::write_text(file, text);
  EXPECT_EQ(run(*c.make_auto(file), p, {true, Activation::None, false}), expected);
  EXPECT_EQ(c.slow_runs, 1);
  EXPECT_EQ(c.fast_runs, 0);

  for (const std::string bad : {"{\"truncated", "[1, 2]", "{\"x\": 3}"}) {
    test::write_text(file, bad);
    EXPECT_EQ(run(*c.make_auto(file), p, {true, Activation::None, false}), expected) << bad;
    EXPECT_THAT(test::read_text(file), ::testing::HasSubstr("\"20 x 40\": \"ref + 0 us\"")) << bad;
  }
  test::write_text(dir.file("not-a-dir"), "");
  EXPECT_EQ(run(*c.make_auto(dir.file("not-a-dir/auto-choices.json")), p, {true, Activation::None, false}), expected)
      << "a file that cannot be written costs only the timing";
}

// The vectorised packer against the portable loop, byte for byte, on panels
// with missing columns and on K with a partial 64-byte block.
TEST(PanelWeight, TransposingPackerWritesThePortableLayout) {
  if (isa_level() < IsaLevel::Avx512) GTEST_SKIP() << "needs AVX-512";
  for (const auto& [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {65, 3}, {130, 1000}, {17, 4608}, {64, 64}}) {
    std::vector<int8_t> q(static_cast<size_t>(n * k));
    for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<int8_t>(static_cast<int>(i * 37 % 255) - 127);
    const std::vector<float> scale(static_cast<size_t>(n), 1.0f);
    const WeightView w{q.data(), scale.data(), n, k};
    const int64_t k_groups = (k + 63) / 64 * 16;
    accel::AlignedArray<int8_t> transposed(static_cast<size_t>(k_groups * accel::kGroupBytes));
    for (const bool shifted : {false, true}) {
      for (int64_t panel = 0; panel < (n + 63) / 64; ++panel) {
        std::vector<int8_t> portable(static_cast<size_t>(k_groups * accel::kGroupBytes), 1);
        EXPECT_FALSE(accel::pack_panel_scalar(w, panel, k_groups, shifted, portable.data()));
        EXPECT_FALSE(accel::pack_panel_avx512(w, panel, k_groups, shifted, transposed.data()));
        EXPECT_TRUE(std::equal(portable.begin(), portable.end(), transposed.data()))
            << "n " << n << ", k " << k << ", panel " << panel << (shifted ? ", shifted" : "");
      }
    }
    q.back() = -128;
    EXPECT_TRUE(accel::pack_panel_scalar(w, (n - 1) / 64, k_groups, true, transposed.data()));
    EXPECT_TRUE(accel::pack_panel_avx512(w, (n - 1) / 64, k_groups, true, transposed.data()));
  }
}

}  // namespace
}  // namespace tiledraw
