#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>

#include "kernels/quantize/im2col_quantize.h"
#include "kernels/quantize/quantize_rows.h"
#include "test_util.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;

// The format's definition, written out plainly in double precision where it can be.
void oracle_quantize(const std::vector<float>& x, size_t rows, size_t cols, std::vector<int8_t>& q,
                     std::vector<float>& scales) {
  q.assign(rows * cols, 0);
  scales.assign(rows, 0.0f);
  for (size_t r = 0; r < rows; ++r) {
    float absmax = 0.0f;
    for (size_t k = 0; k < cols; ++k) absmax = std::max(absmax, std::abs(x[r * cols + k]));
    scales[r] = std::max(absmax / 127.0f, FLT_MIN);
    for (size_t k = 0; k < cols; ++k) {
      const double v = std::nearbyint(x[r * cols + k] / scales[r]);
      q[r * cols + k] = static_cast<int8_t>(std::clamp(v, -127.0, 127.0));
    }
  }
}

TEST(Quant8s, EveryElementIsWithinHalfAScaleOfItsWeight) {
  const size_t rows = 37, cols = 301;
  std::vector<float> w = test::random_floats(rows * cols, 1, 0.02f);
  w[5 * cols + 7] = 3.0f;  // an outlier row
  std::vector<int8_t> q(rows * cols);
  std::vector<float> scales(rows);
  quantize_rows_8bit_s(w.data(), rows, cols, q.data(), scales.data());
  for (size_t r = 0; r < rows; ++r) {
    ASSERT_GT(scales[r], 0.0f);
    bool reaches_127 = false;
    for (size_t k = 0; k < cols; ++k) {
      ASSERT_TRUE(test::within_half_scale(w[r * cols + k], q[r * cols + k], scales[r])) << r << "," << k;
      ASSERT_GE(q[r * cols + k], -127);
      reaches_127 |= std::abs(q[r * cols + k]) == 127;
    }
    EXPECT_TRUE(reaches_127) << "the largest element of row " << r << " must use the full range";
  }
  EXPECT_NEAR(scales[5], 3.0f / 127.0f, 1e-9f);
}

TEST(Quant8s, AllZeroAndTinyRowsNeverGetAZeroScale) {
  std::vector<float> w = {0, 0, 0, 0, 1e-42f, -1e-42f, 0, 0, -0.0f, 0, 0, 0};
  std::vector<int8_t> q(12);
  std::vector<float> scales(3);
  quantize_rows_8bit_s(w.data(), 3, 4, q.data(), scales.data());
  for (float s : scales) EXPECT_EQ(s, FLT_MIN);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(q[i], 0);
    EXPECT_TRUE(test::within_half_scale(w[i], q[i], scales[i / 4]));
  }
}

TEST(Quant8s, TiesRoundToEven) {
  // absmax 127 gives scale 1, so x / scale is exact and the ties are visible.
  std::vector<float> w = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -126.5f, 3.49f};
  std::vector<int8_t> q(8);
  float scale = 0;
  quantize_rows_8bit_s(w.data(), 1, 8, q.data(), &scale);
  EXPECT_EQ(scale, 1.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 0, 2, 2, 0, -2, -126, 3}));
}

class QuantizeKernel : public ::testing::TestWithParam<IsaLevel> {};

TEST_P(QuantizeKernel, MatchesTheOracleBitForBitAtEveryTailLength) {
  if (GetParam() > isa_level()) GTEST_SKIP() << "this CPU lacks " << isa_level_name(GetParam());
  const kernels::QuantizeRowsFn kernel = kernels::quantize_rows_kernel(GetParam());
  for (size_t cols : {1, 7, 8, 15, 16, 17, 31, 33, 64, 100, 257}) {
    const size_t rows = 5;
    const std::vector<float> x = test::random_floats(rows * cols, static_cast<uint32_t>(cols), 3.0f);
    std::vector<int8_t> q(rows * cols), expected_q;
    std::vector<float> scales(rows), expected_scales;
    kernel(x.data(), rows, cols, q.data(), scales.data());
    oracle_quantize(x, rows, cols, expected_q, expected_scales);
    ASSERT_EQ(scales, expected_scales) << "cols " << cols;
    ASSERT_EQ(q, expected_q) << "cols " << cols;
  }
}

// NaN or Inf anywhere in a row, body or tail: that row is zeros with a NaN
// scale, and the other rows are untouched.
TEST_P(QuantizeKernel, ARowWithNanOrInfBecomesZerosWithANanScale) {
  if (GetParam() > isa_level()) GTEST_SKIP() << "this CPU lacks " << isa_level_name(GetParam());
  const kernels::QuantizeRowsFn kernel = kernels::quantize_rows_kernel(GetParam());
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (size_t cols : {1, 7, 16, 17, 33}) {
    for (size_t at : {size_t{0}, cols / 2, cols - 1}) {
      for (const float special : specials) {
        std::vector<float> x = test::random_floats(3 * cols, static_cast<uint32_t>(cols + at), 3.0f);
        x[cols + at] = special;
        std::vector<int8_t> q(3 * cols, 99), expected_q;
        std::vector<float> scales(3), expected_scales;
        kernel(x.data(), 3, cols, q.data(), scales.data());
        std::vector<float> finite_rows = x;  // the oracle's conversions are undefined for NaN
        std::fill_n(finite_rows.begin() + static_cast<std::ptrdiff_t>(cols), cols, 0.0f);
        oracle_quantize(finite_rows, 3, cols, expected_q, expected_scales);
        EXPECT_TRUE(std::isnan(scales[1])) << special << " at " << at << " of " << cols;
        EXPECT_EQ(std::vector<int8_t>(q.begin() + static_cast<std::ptrdiff_t>(cols), q.begin() + static_cast<std::ptrdiff_t>(2 * cols)),
                  std::vector<int8_t>(cols, 0));
        EXPECT_EQ(scales[0], expected_scales[0]);
        EXPECT_EQ(scales[2], expected_scales[2]);
        EXPECT_EQ(std::vector<int8_t>(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(cols)),
                  std::vector<int8_t>(expected_q.begin(), expected_q.begin() + static_cast<std::ptrdiff_t>(cols)));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Quant8s, QuantizeKernel, ::testing::Values(IsaLevel::Scalar, IsaLevel::Avx2, IsaLevel::Avx512),
                         [](const ::testing::TestParamInfo<IsaLevel>& info) { return isa_level_name(info.param); });

// A convolution's quantized im2col rows against the window gathered plainly
// here, then the oracle above: every geometry the models use and the awkward
// ones (windows past every border, strides, rows narrower than a vector,
// blocks starting mid-row and spanning images), and NaN in one input pixel.
class Im2colQuantizeKernel : public ::testing::TestWithParam<IsaLevel> {};

TEST_P(Im2colQuantizeKernel, MatchesTheGatheredWindowsQuantizedByTheOracle) {
  if (GetParam() > isa_level()) GTEST_SKIP() << "this CPU lacks " << isa_level_name(GetParam());
  const kernels::Im2colQuantizeFn kernel = kernels::im2col_quantize_kernel(GetParam());
  struct Case {
    int64_t batch, channels, height, width, kernel, stride, padding, first, count;
    bool with_nan;
  };
  const Case cases[] = {
      {1, 3, 20, 37, 3, 1, 1, 0, 740, false},  // rows wider than 16 pixels, blocks across rows
      {2, 5, 7, 9, 3, 1, 1, 5, 100, false},    // narrower than a vector, across images
      {1, 4, 9, 10, 3, 2, 1, 0, 25, false},    // stride 2 (downsampling)
      {1, 17, 6, 40, 1, 1, 0, 3, 200, false},  // 1 x 1 (shortcut convolutions)
      {1, 2, 12, 18, 3, 1, 0, 0, 160, false},  // no padding
      {2, 6, 16, 16, 3, 1, 1, 0, 512, true},   // NaN in one pixel
  };
  for (const Case& c : cases) {
    const kernels::ConvGeometry g{c.batch, c.channels, c.height, c.width, c.kernel, c.stride, c.padding,
                                  (c.height + 2 * c.padding - c.kernel) / c.stride + 1,
                                  (c.width + 2 * c.padding - c.kernel) / c.stride + 1};
    std::vector<float> x = test::random_floats(static_cast<size_t>(c.batch * c.channels * c.height * c.width),
                                               static_cast<uint32_t>(c.channels * 31 + c.width), 2.0f);
    const int64_t nan_at = 3 * c.width + 4;  // image 0, channel 0, row 3, column 4
    if (c.with_nan) x[static_cast<size_t>(nan_at)] = std::numeric_limits<float>::quiet_NaN();
    const int64_t k = c.channels * c.kernel * c.kernel, stride = (k + 63) / 64 * 64;
    std::vector<float> windows(static_cast<size_t>(c.count * k), 0.0f);
    std::vector<bool> holds_nan(static_cast<size_t>(c.count), false);
    for (int64_t i = 0; i < c.count; ++i) {
      const int64_t pixel = c.first + i, plane = g.out_height * g.out_width;
      const int64_t b = pixel / plane, oy = pixel % plane / g.out_width, ox = pixel % g.out_width;
      for (int64_t ch = 0; ch < c.channels; ++ch) {
        for (int64_t ky = 0; ky < c.kernel; ++ky) {
          for (int64_t kx = 0; kx < c.kernel; ++kx) {
            const int64_t iy = oy * c.stride - c.padding + ky, ix = ox * c.stride - c.padding + kx;
            if (iy < 0 || iy >= c.height || ix < 0 || ix >= c.width) continue;
            const int64_t at = ((b * c.channels + ch) * c.height + iy) * c.width + ix;
            if (at == nan_at && c.with_nan) {
              holds_nan[static_cast<size_t>(i)] = true;
              continue;
            }
            windows[static_cast<size_t>(i * k + (ch * c.kernel + ky) * c.kernel + kx)] = x[static_cast<size_t>(at)];
          }
        }
      }
    }
    std::vector<int8_t> expected_q;
    std::vector<float> expected_scales;
    oracle_quantize(windows, static_cast<size_t>(c.count), static_cast<size_t>(k), expected_q, expected_scales);
    std::vector<int8_t> q(static_cast<size_t>(c.count * stride), 99);
    std::vector<float> scales(static_cast<size_t>(c.count));
    std::vector<int32_t> sums(static_cast<size_t>(c.count));
    std::vector<float> pixel_absmax(static_cast<size_t>(c.batch * c.height * c.width));
    kernels::conv_pixel_absmax(x.data(), g, pixel_absmax.data());
    kernel(x.data(), g, c.first, c.count, pixel_absmax.data(), {q.data(), stride, scales.data(), sums.data()});
    int64_t nan_rows = 0;
    for (int64_t i = 0; i < c.count; ++i) {
      const auto row = static_cast<std::ptrdiff_t>(i * stride);
      std::vector<int8_t> expected_row(static_cast<size_t>(stride), 0);
      int32_t expected_sum = 0;
      if (holds_nan[static_cast<size_t>(i)]) {
        ++nan_rows;
        ASSERT_TRUE(std::isnan(scales[static_cast<size_t>(i)])) << "pixel " << i;
      } else {
        std::copy_n(expected_q.begin() + static_cast<std::ptrdiff_t>(i * k), k, expected_row.begin());
        for (int64_t j = 0; j < k; ++j) expected_sum += expected_row[static_cast<size_t>(j)];
        ASSERT_EQ(scales[static_cast<size_t>(i)], expected_scales[static_cast<size_t>(i)]) << "pixel " << i;
      }
      ASSERT_EQ(std::vector<int8_t>(q.begin() + row, q.begin() + row + stride), expected_row)
          << c.channels << " channels, " << c.height << " x " << c.width << ", pixel " << i;
      ASSERT_EQ(sums[static_cast<size_t>(i)], expected_sum) << "pixel " << i;
    }
    EXPECT_EQ(nan_rows, c.with_nan ? 9 : 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Quant8s, Im2colQuantizeKernel,
                         ::testing::Values(IsaLevel::Scalar, IsaLevel::Avx2, IsaLevel::Avx512),
                         [](const ::testing::TestParamInfo<IsaLevel>& info) { return isa_level_name(info.param); });

class Find8BitS : public ::testing::Test {
 protected:
  SafetensorsFile write(std::vector<TensorSource> tensors) {
    write_safetensors(dir_.file("m.safetensors"), std::move(tensors), {});
    return SafetensorsFile::open(dir_.file("m.safetensors"));
  }
  TensorSource zeros(const std::string& name, DType dtype, std::vector<int64_t> shape) {
    return {name, dtype, std::move(shape), {}};
  }
  TensorSource scales(const std::string& name, std::vector<float> values) {
    values_.push_back(std::move(values));
    return TensorSource::from_bytes(name, DType::F32, {static_cast<int64_t>(values_.back().size())},
                                    test::bytes_of(values_.back()));
  }
  test::TempDir dir_;
  std::vector<std::vector<float>> values_;
};

TEST_F(Find8BitS, PairsAnInt8MatrixWithItsRowScales) {
  std::vector<TensorSource> t;
  t.push_back(zeros("lin.weight", DType::I8, {3, 4}));
  t.push_back(scales("lin.weight_scale", {0.5f, 1.0f, 2.0f}));
  t.push_back(zeros("conv.weight", DType::I8, {2, 3, 3, 3}));
  t.push_back(zeros("conv.weight_scale", DType::BF16, {2, 1}));  // ComfyUI-style [N, 1] in BF16
  t.push_back(zeros("plain.int8", DType::I8, {4, 4}));           // no scale: just an I8 tensor
  t.push_back(zeros("norm.weight", DType::F32, {4}));
  const SafetensorsFile file = write(std::move(t));
  const std::vector<Weight8BitS> found = find_8bit_s_weights(file);
  ASSERT_EQ(found.size(), 2u);
  std::map<std::string, Weight8BitS> by_name;
  for (const Weight8BitS& w : found) by_name.emplace(w.values->name, w);
  EXPECT_EQ(by_name.at("lin.weight").rows, 3);
  EXPECT_EQ(by_name.at("lin.weight").cols, 4);
  EXPECT_EQ(by_name.at("lin.weight").load_scales(file), (std::vector<float>{0.5f, 1.0f, 2.0f}));
  EXPECT_EQ(by_name.at("conv.weight").cols, 27);
  EXPECT_EQ(by_name.at("conv.weight").scale->name, "conv.weight_scale");
}

TEST_F(Find8BitS, RejectsAScaleOfTheWrongShape) {
  std::vector<TensorSource> t;
  t.push_back(zeros("lin.weight", DType::I8, {3, 4}));
  t.push_back(scales("lin.weight_scale", {1, 1, 1, 1}));
  const SafetensorsFile file = write(std::move(t));
  EXPECT_THAT([&] { find_8bit_s_weights(file); },
              ::testing::ThrowsMessage<Error>(HasSubstr(
                  "8-bit S weight 'lin.weight': scale 'lin.weight_scale' has shape [4], expected [3] (one per output row)")));
}

TEST_F(Find8BitS, RejectsAScaleOfTheWrongDtype) {
  std::vector<TensorSource> t;
  t.push_back(zeros("lin.weight", DType::I8, {3, 4}));
  t.push_back(zeros("lin.weight_scale", DType::I32, {3}));
  const SafetensorsFile file = write(std::move(t));
  EXPECT_THAT([&] { find_8bit_s_weights(file); },
              ::testing::ThrowsMessage<Error>(HasSubstr("scale 'lin.weight_scale' is I32, expected F32, F16 or BF16")));
}

TEST_F(Find8BitS, RejectsAVectorWithAScale) {
  std::vector<TensorSource> t;
  t.push_back(zeros("lin.weight", DType::I8, {3}));
  t.push_back(scales("lin.weight_scale", {1, 1, 1}));
  const SafetensorsFile file = write(std::move(t));
  EXPECT_THAT([&] { find_8bit_s_weights(file); }, ::testing::ThrowsMessage<Error>(HasSubstr("has rank 1")));
}

TEST_F(Find8BitS, RejectsNonFiniteScalesWhenLoaded) {
  std::vector<TensorSource> t;
  t.push_back(zeros("lin.weight", DType::I8, {2, 4}));
  t.push_back(scales("lin.weight_scale", {1.0f, NAN}));
  const SafetensorsFile file = write(std::move(t));
  const auto found = find_8bit_s_weights(file);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_THAT([&] { found[0].load_scales(file); },
              ::testing::ThrowsMessage<Error>(HasSubstr("tensor 'lin.weight_scale': scale of row 1 is not finite")));
}

TEST_F(Find8BitS, ReadsPanelsAsTheRowsTheyHoldAndRefusesPanelsThatDoNotFit) {
  const int64_t n = 128, k = 192;
  std::vector<int8_t> q(static_cast<size_t>(n * k));
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<int8_t>(static_cast<int>(i * 53 % 255) - 127);
  const std::vector<uint8_t> panels = test::stored_panels(q, n, k);
  std::vector<uint8_t> written(panels.size());
  rows_to_panels_8bit_s(q.data(), n, k, written.data());
  EXPECT_EQ(written, panels);
  std::vector<int8_t> unpacked(q.size());
  panels_to_rows_8bit_s(panels.data(), n, k, unpacked.data());
  EXPECT_EQ(unpacked, q);

  std::vector<TensorSource> t;
  t.push_back(TensorSource::from_bytes("conv.weight", DType::U8, {n, k / 4, 2, 2}, test::bytes_of(panels)));
  t.push_back(zeros("conv.weight_scale", DType::F32, {n}));
  t.push_back(zeros("odd.weight", DType::U8, {96, 64}));
  const SafetensorsFile fits = write({t[0], t[1]});
  const std::vector<Weight8BitS> found = find_8bit_s_weights(fits);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].layout(), Layout8BitS::Panels);
  EXPECT_EQ(found[0].cols, k);
  EXPECT_EQ(found[0].read_rows(fits), q);
  t.push_back(scales("odd.weight_scale", std::vector<float>(96, 1.0f)));
  const SafetensorsFile odd = write(std::move(t));
  EXPECT_THAT([&] { find_8bit_s_weights(odd); },
              ::testing::ThrowsMessage<Error>(HasSubstr("8-bit S weight 'odd.weight': is U8 (panels) of shape [96, 64], but panels "
                                                        "need rows and columns that are multiples of 64")));
}

}  // namespace
}  // namespace tiledraw
