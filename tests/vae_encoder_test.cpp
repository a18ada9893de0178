// The VAE encoder: both checkpoint layouts, shapes, and malformed files. Its
// numbers against PyTorch are checked by tests/reference/test_encoders.py.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/vae.h"
#include "runtime/executor.h"
#include "test_util.h"
#include "tiledraw/error.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

// An encoder (3 image channels, blocks of 8 and 16 channels, one resnet each,
// groups of 4, 4 latent channels) in diffusers' names, each with its name in
// the original (LDM) layout, whose down blocks count the same way.
std::vector<test::VaeTensorShapes::Entry> encoder_tensors() {
  test::VaeTensorShapes t;
  t.conv("encoder.conv_in", "encoder.conv_in", 8, 3, 3);
  t.resnet("encoder.down_blocks.0.resnets.0", "encoder.down.0.block.0", 8, 8);
  t.conv("encoder.down_blocks.0.downsamplers.0.conv", "encoder.down.0.downsample.conv", 8, 8, 3);
  t.resnet("encoder.down_blocks.1.resnets.0", "encoder.down.1.block.0", 8, 16);
  t.resnet("encoder.mid_block.resnets.0", "encoder.mid.block_1", 16, 16);
  t.mid_attention("encoder", 16, false);
  t.resnet("encoder.mid_block.resnets.1", "encoder.mid.block_2", 16, 16);
  t.norm("encoder.conv_norm_out", "encoder.norm_out", 16);
  t.conv("encoder.conv_out", "encoder.conv_out", 8, 16, 3);
  t.conv("quant_conv", "quant_conv", 8, 8, 1);
  return t.entries();
}

// The encoder's tensors in one layout, with a replacement shape for one of them.
test::TensorShapes shapes(bool original, const std::string& prefix = "", const std::string& changed = "",
                          std::vector<int64_t> shape = {}) {
  test::TensorShapes out;
  for (const auto& [d, l, s] : encoder_tensors()) {
    const std::string& name = original ? l : d;
    if (name == changed && shape.empty()) continue;
    out.emplace_back(prefix + name, name == changed ? shape : s);
  }
  return out;
}

std::vector<float> encode(const models::VaeEncoder& encoder, const std::vector<float>& image, int64_t height, int64_t width) {
  const auto accel = make_accelerator("ref");
  const auto built = encoder.build(1, height, width);
  EXPECT_EQ(built->graph.values()[static_cast<size_t>(built->mean)].shape, (std::vector<int64_t>{1, 4, height / 2, width / 2}));
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  exec.run({image.data()});
  const float* mean = exec.data(built->mean);
  return {mean, mean + 4 * height * width / 4};
}

TEST(VaeEncoder, BothLayoutsReadAsTheSameModel) {
  test::TempDir dir;
  test::write_random_safetensors(dir.file("diffusers.safetensors"), shapes(false), {{"config", R"({"norm_num_groups": 4})"}});
  test::TensorShapes ldm = shapes(true, "first_stage_model.");
  ldm.emplace_back("model.diffusion_model.out.0.weight", std::vector<int64_t>{4});  // another model in the same file
  test::write_random_safetensors(dir.file("ldm.safetensors"), ldm, {});
  const SafetensorsFile diffusers_file = SafetensorsFile::open(dir.file("diffusers.safetensors"));
  const SafetensorsFile ldm_file = SafetensorsFile::open(dir.file("ldm.safetensors"));
  const models::WeightView diffusers(diffusers_file);
  const models::WeightView ldm_view(ldm_file, "first_stage_model.", {}, {{"norm_num_groups", 4}});
  EXPECT_TRUE(models::holds_vae_encoder(diffusers));
  EXPECT_TRUE(models::holds_vae_encoder(ldm_view));
  EXPECT_FALSE(models::holds_vae_decoder(ldm_view)) << "an encoder alone";
  EXPECT_TRUE(models::vae_in_original_layout(ldm_view));

  const auto accel = make_accelerator("ref");
  const models::VaeEncoder a(diffusers, *accel, Precision::Float), b(ldm_view, *accel, Precision::Float);
  EXPECT_EQ(b.config().in_channels, 3);
  EXPECT_EQ(b.config().latent_channels, 4);
  EXPECT_EQ(b.config().block_out_channels, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(b.config().layers_per_block, 1);
  EXPECT_EQ(b.config().factor(), 2);
  const std::vector<float> image = test::random_floats(3 * 6 * 10, 9, 0.5f);
  EXPECT_EQ(encode(a, image, 6, 10), encode(b, image, 6, 10)) << "the same weights under either name give the same bits";
  EXPECT_THAT([&] { a.build(1, 6, 9); }, ThrowsMessage<Error>(HasSubstr("6 x 9 pixels: must be positive multiples of 2")));
}

TEST(VaeEncoder, MalformedFilesAreErrorsNamingFileAndTensor) {
  test::TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const auto load = [&](const test::TensorShapes& tensors) {
    test::write_random_safetensors(path, tensors, {{"config", R"({"norm_num_groups": 4})"}});
    const SafetensorsFile file = SafetensorsFile::open(path);
    const auto accel = make_accelerator("ref");
    const models::VaeEncoder encoder(file, *accel, Precision::AsStored);
    encoder.build(1, 4, 4);
  };
  EXPECT_THAT([&] { load(shapes(false, "", "encoder.down_blocks.0.downsamplers.0.conv.weight")); },
              ThrowsMessage<Error>(HasSubstr(path + ": not a VAE encoder: no tensor 'encoder.down_blocks.0.downsamplers.0.conv.weight'")));
  EXPECT_THAT([&] { load(shapes(false, "", "quant_conv.bias")); }, ThrowsMessage<Error>(HasSubstr("no tensor 'quant_conv.bias'")));
  EXPECT_THAT([&] { load(shapes(false, "", "encoder.conv_out.weight", {7, 16, 3, 3})); },
              ThrowsMessage<Error>(HasSubstr("'encoder.conv_out.weight' has 7 outputs, expected an even number")));
  EXPECT_THAT([&] { load(shapes(false, "", "encoder.conv_in.weight", {8, 27})); },
              ThrowsMessage<Error>(HasSubstr("'encoder.conv_in.weight' of shape [8, 27] is not a convolution weight")));
  test::TensorShapes narrow_quant_conv = shapes(false, "", "quant_conv.weight", {2, 8, 1, 1});
  for (auto& [name, shape] : narrow_quant_conv) {
    if (name == "quant_conv.bias") shape = {2};
  }
  EXPECT_THAT([&] { load(narrow_quant_conv); }, ThrowsMessage<Error>(HasSubstr("'quant_conv.weight' has 2 rows, fewer than the 4 needed")));
  EXPECT_THAT([&] { load(shapes(false, "", "encoder.mid_block.attentions.0.group_norm.weight", {8})); },
              ThrowsMessage<Error>(HasSubstr("'encoder.mid_block.attentions.0.group_norm.bias' and "
                                             "'encoder.mid_block.attentions.0.group_norm.weight' differ in size")));
  test::TensorShapes narrow_norm = shapes(false, "", "encoder.conv_norm_out.weight", {8});
  for (auto& [name, shape] : narrow_norm) {
    if (name == "encoder.conv_norm_out.bias") shape = {8};
  }
  EXPECT_THAT([&] { load(narrow_norm); }, ThrowsMessage<Error>(HasSubstr(path + ": 'encoder.conv_norm_out.weight' has 8 values for 16 channels")));
  EXPECT_THROW(load(shapes(false, "", "encoder.down_blocks.1.resnets.0.conv1.weight", {16, 4, 3, 3})), Error)
      << "a convolution of the wrong input channels is refused when the graph is built";
}

}  // namespace
}  // namespace tiledraw
