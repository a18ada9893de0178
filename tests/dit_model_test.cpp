// Loading a DiT checkpoint (the bundled tiny one, original key names) and
// running its forward pass, in float and in 8-bit S.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "models/dit.h"
#include "runtime/executor.h"
#include "test_util.h"
#include "tiledraw/convert.h"
#include "tiledraw/error.h"

namespace tiledraw {
namespace {

const std::string kTinyDit = std::string(TILEDRAW_SOURCE_DIR) + "/examples/tiny-dit-f16.safetensors";

std::vector<float> forward(const models::DitModel& model, const Accelerator& accel, int64_t height, int64_t width,
                           const std::vector<float>& classes) {
  const auto built = model.build({2, height, width});
  ProgramCache cache;
  runtime::Executor exec(built->graph, accel, cache);
  const auto latents = test::random_floats(static_cast<size_t>(2 * model.config().in_channels * height * width), 4);
  const std::vector<float> timesteps = {0.0f, 500.0f};
  exec.run({latents.data(), timesteps.data(), classes.data()});
  const auto& out = built->graph.values()[static_cast<size_t>(built->output)];
  EXPECT_EQ(out.shape, (std::vector<int64_t>{2, model.config().out_channels(), height, width}));
  return {exec.data(built->output), exec.data(built->output) + out.numel()};
}

TEST(DitModel, ReadsTheConfigOfTheBundledCheckpoint) {
  const SafetensorsFile file = SafetensorsFile::open(kTinyDit);
  const models::DitModel model(file, *make_accelerator("auto"));
  const models::DitConfig& c = model.config();
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.depth, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.patch_size, 2);
  EXPECT_EQ(c.in_channels, 4);
  EXPECT_EQ(c.out_channels(), 8);
  EXPECT_EQ(c.num_classes, 10);
  EXPECT_EQ(c.input_size, 8);
  EXPECT_EQ(c.mlp_hidden, 256);
}

TEST(DitModel, EightBitSFollowsTheFloatModelAtTrainedAndOtherSizes) {
  test::TempDir dir;
  convert_to_8bit_s(kTinyDit, dir.file("tiny-8bit-s.safetensors"), {});
  const auto accel = make_accelerator("auto");
  const SafetensorsFile float_file = SafetensorsFile::open(kTinyDit);
  const SafetensorsFile int8_file = SafetensorsFile::open(dir.file("tiny-8bit-s.safetensors"));
  const models::DitModel float_model(float_file, *accel), int8_model(int8_file, *accel);
  const std::vector<float> classes = {3.0f, 10.0f};  // a class, and the null class used for guidance
  for (const auto& [height, width] : std::vector<std::pair<int64_t, int64_t>>{{8, 8}, {16, 12}}) {
    const std::vector<float> reference = forward(float_model, *accel, height, width, classes);
    const std::vector<float> quantized = forward(int8_model, *accel, height, width, classes);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < reference.size(); ++i) {
      ASSERT_TRUE(std::isfinite(quantized[i]));
      diff += (quantized[i] - reference[i]) * double(quantized[i] - reference[i]);
      norm += double(reference[i]) * reference[i];
    }
    EXPECT_GT(norm, 0.0);
    EXPECT_LT(std::sqrt(diff / norm), 0.03) << height << " x " << width;  // 1.25% seen
    EXPECT_EQ(forward(int8_model, *accel, height, width, classes), quantized) << "the same inputs give the same bits";
  }
}

TEST(DitModel, RefusesBadClassesSizesAndFiles) {
  const auto accel = make_accelerator("auto");
  const SafetensorsFile file = SafetensorsFile::open(kTinyDit);
  const models::DitModel model(file, *accel);
  EXPECT_THAT([&] { forward(model, *accel, 8, 8, {11.0f, 0.0f}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("is not a row of a table of 11")));
  EXPECT_THAT([&] { model.build({1, 7, 8}); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("multiples of the patch size 2")));
  test::TempDir dir;
  write_safetensors(dir.file("other.safetensors"), {}, {});
  const SafetensorsFile other = SafetensorsFile::open(dir.file("other.safetensors"));
  EXPECT_THAT([&] { models::DitModel bad(other, *accel); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("not a DiT checkpoint: no tensor 'x_embedder.proj.weight'")));
}

TEST(DitModel, PositionEmbeddingFollowsTheSinCosFormula) {
  // width 8: a quarter of 2 frequencies, 1 and 10000^-1/2 = 0.01; token (row 1, column 2).
  const std::vector<float> table = models::dit_position_embedding(8, 2, 3);
  const float* token = &table[(1 * 3 + 2) * 8];
  const std::vector<float> expected = {std::sin(2.0f), std::sin(0.02f), std::cos(2.0f), std::cos(0.02f),
                                       std::sin(1.0f), std::sin(0.01f), std::cos(1.0f), std::cos(0.01f)};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(token[i], expected[static_cast<size_t>(i)], 1e-6) << i;
}

}  // namespace
}  // namespace tiledraw
