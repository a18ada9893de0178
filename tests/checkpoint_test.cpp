// Checkpoints: canonical names through a prefix and a rename, family
// detection, and the layouts of one family reading as the same model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "models/checkpoint.h"
#include "models/vae.h"
#include "pipeline/loading.h"
#include "runtime/executor.h"
#include "test_util.h"
#include "tiledraw/error.h"
#include "tiledraw/pipeline.h"

namespace tiledraw {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(WeightView, RulesRenameWholePartsAndCarryTheirNumbers) {
  const models::WeightView::Rename rename = models::rename_by_rules({
      {"blocks.{}.attn.qkv", {"layers.{}.q", "layers.{}.k", "layers.{}.v"}},
      {"blocks.{}.t_embedder", {"t_embedder"}},
      {"up.{}.block.{}", {"up_blocks.{}.resnets.{}"}},
      {"final", {}},
  });
  EXPECT_THAT(rename("blocks.12.attn.qkv.weight"), ElementsAre("layers.12.q.weight", "layers.12.k.weight", "layers.12.v.weight"));
  EXPECT_THAT(rename("blocks.3.t_embedder.mlp.0.bias"), ElementsAre("t_embedder.mlp.0.bias"));
  EXPECT_THAT(rename("up.1.block.2.conv1.weight"), ElementsAre("up_blocks.1.resnets.2.conv1.weight"));
  EXPECT_THAT(rename("blocks.x.attn.qkv.weight"), ElementsAre("blocks.x.attn.qkv.weight")) << "{} is a number";
  EXPECT_THAT(rename("blocks.3.attn.qkvx.weight"), ElementsAre("blocks.3.attn.qkvx.weight")) << "whole parts only";
  EXPECT_TRUE(rename("final").empty());

  test::TempDir dir;
  test::write_random_safetensors(dir.file("m.safetensors"), {{"first_stage_model.layers.0.q.weight", {2, 2}}}, {});
  const SafetensorsFile file = SafetensorsFile::open(dir.file("m.safetensors"));
  const models::WeightView view(file, "first_stage_model.", rename, nlohmann::json::object());
  EXPECT_THAT(view.stored_names("blocks.0.attn.qkv.weight"), ElementsAre("first_stage_model.layers.0.q.weight",
                                                                          "first_stage_model.layers.0.k.weight",
                                                                          "first_stage_model.layers.0.v.weight"));
  EXPECT_EQ(view.find("blocks.0.attn.qkv.weight"), nullptr) << "three stored tensors are not one";
  EXPECT_THAT([&] { models::require_tensor(view, "blocks.7.t_embedder.weight", "a test model", "expected t_embedder"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("not a test model: no tensor 'first_stage_model.t_embedder.weight'")));
}

// A VAE decoder (4 latent channels, blocks of 8 and 16 channels, groups of 4)
// in diffusers' names, each with its name in the original (LDM) layout, whose
// up blocks count the other way.
std::vector<test::VaeTensorShapes::Entry> vae_tensors() {
  test::VaeTensorShapes t;
  t.conv("post_quant_conv", "post_quant_conv", 4, 4, 1);
  t.conv("decoder.conv_in", "decoder.conv_in", 16, 4, 3);
  t.resnet("decoder.mid_block.resnets.0", "decoder.mid.block_1", 16, 16);
  t.mid_attention("decoder", 16, true);
  t.resnet("decoder.mid_block.resnets.1", "decoder.mid.block_2", 16, 16);
  t.resnet("decoder.up_blocks.0.resnets.0", "decoder.up.1.block.0", 16, 16);
  t.resnet("decoder.up_blocks.0.resnets.1", "decoder.up.1.block.1", 16, 16);
  t.conv("decoder.up_blocks.0.upsamplers.0.conv", "decoder.up.1.upsample.conv", 16, 16, 3);
  t.resnet("decoder.up_blocks.1.resnets.0", "decoder.up.0.block.0", 16, 8);
  t.resnet("decoder.up_blocks.1.resnets.1", "decoder.up.0.block.1", 8, 8);
  t.norm("decoder.conv_norm_out", "decoder.norm_out", 8);
  t.conv("decoder.conv_out", "decoder.conv_out", 3, 8, 3);
  return t.entries();
}

std::vector<float> decode(const models::VaeDecoder& vae, const std::vector<float>& z) {
  const auto accel = make_accelerator("ref");
  const auto built = vae.build(1, 3, 5);
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  exec.run({z.data()});
  const float* image = exec.data(built->image);
  return {image, image + 3 * 6 * 10};
}

TEST(Checkpoint, AVaeInTheOriginalLayoutUnderAPrefixIsTheSameModelAsInDiffusersNames) {
  test::TempDir dir;
  test::TensorShapes diffusers, ldm;
  for (const auto& [d, l, shape] : vae_tensors()) {
    diffusers.emplace_back(d, shape);
    ldm.emplace_back("first_stage_model." + l, shape);
  }
  ldm.emplace_back("model.diffusion_model.out.0.weight", std::vector<int64_t>{4});  // another model in the same file
  test::write_random_safetensors(dir.file("diffusers.safetensors"), diffusers, {{"config", R"({"norm_num_groups": 4})"}});
  test::write_random_safetensors(dir.file("ldm.safetensors"), ldm, {});

  const models::Checkpoint a = models::Checkpoint::open(dir.file("diffusers.safetensors"));
  const models::Checkpoint b = models::Checkpoint::open(dir.file("ldm.safetensors"));
  const models::DetectedFamily found_a = models::detect_family(a), found_b = models::detect_family(b);
  EXPECT_EQ(found_a.info.family, "vae");
  EXPECT_EQ(found_b.info.family, "vae");
  ASSERT_EQ(found_b.info.components.size(), 1u);
  EXPECT_THAT(found_b.info.components[0].where, HasSubstr("(first_stage_model.*)"));
  EXPECT_THAT(found_b.info.components[0].details, HasSubstr("original (LDM) layout"));

  const auto accel = make_accelerator("ref");
  const models::WeightView ldm_view(*b.file(), "first_stage_model.", {}, {{"norm_num_groups", 4}});
  const models::VaeDecoder from_diffusers(found_a.components.at("vae"), *accel, Precision::Float);
  const models::VaeDecoder from_ldm(ldm_view, *accel, Precision::Float);
  EXPECT_EQ(from_ldm.config().block_out_channels, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(from_ldm.config().layers_per_block, 1);
  const std::vector<float> z = test::random_floats(4 * 3 * 5, 9);
  EXPECT_EQ(decode(from_ldm, z), decode(from_diffusers, z)) << "the same weights under either name give the same bits";
}

void write_json(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A diffusers pipeline folder: the DiT from transformer/, its scheduler's
// config, and class names from model_index.json's id2label (any synonym).
TEST(Checkpoint, ADiffusersFolderLoadsItsTransformerSchedulerAndLabels) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "transformer");
  std::filesystem::create_directories(dir.path() / "scheduler");
  test::write_random_safetensors(dir.file("transformer/diffusion_pytorch_model.safetensors"), test::pixel_dit_shapes(), {});
  write_json(dir.file("transformer/config.json"), R"({"num_attention_heads": 2, "sample_size": 8})");
  write_json(dir.file("scheduler/scheduler_config.json"),
             R"({"_class_name": "DDIMScheduler", "beta_schedule": "linear", "steps_offset": 1, "set_alpha_to_one": false})");
  write_json(dir.file("model_index.json"), R"({"_class_name": "DiTPipeline", "transformer": ["diffusers", "DiTTransformer2DModel"],
      "scheduler": ["diffusers", "DDIMScheduler"], "id2label": {"0": "tabby, tabby cat", "1": "golden retriever", "2": "barn owl"}})");

  const CheckpointInfo info = inspect_checkpoint(dir.path().string());
  EXPECT_EQ(info.family, "dit");
  ASSERT_EQ(info.components.size(), 1u);
  EXPECT_THAT(info.components[0].where, HasSubstr("transformer/ in "));
  const auto accel = make_accelerator("ref");
  const auto loaded = pipeline::load_model(dir.path().string(), {}, *accel);
  EXPECT_EQ(loaded->model->noise_schedule().spacing.kind, sampling::TimestepSpacing::Kind::Leading);
  EXPECT_FALSE(loaded->model->noise_schedule().spacing.set_alpha_to_one);
  EXPECT_THAT(loaded->model_info.class_names, ElementsAre("tabby, tabby cat", "golden retriever", "barn owl"));

  const auto folder = Pipeline::load(dir.path().string(), {});
  EXPECT_THAT(folder->class_ids({"tabby-cat", "Golden Retriever", "2"}), ElementsAre(0, 1, 2));
  GenerationRequest request;
  request.classes = {"tabby"};
  request.steps = 3;
  const GenerationResult result = folder->generate(request);
  EXPECT_THAT(result.parameters[0], HasSubstr("class 0 (tabby, tabby cat)\nSteps: 3, Sampler: DDIM"));
}

TEST(Checkpoint, FamiliesNotRunYetAreNamedAndUnknownFilesListWhatTheyHold) {
  test::TempDir dir;
  test::write_random_safetensors(dir.file("sdxl.safetensors"),
                                 {{"model.diffusion_model.label_emb.0.0.weight", {2}},
                                  {"conditioner.embedders.1.model.token_embedding.weight", {2}},
                                  {"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", {2}},
                                  {"first_stage_model.decoder.conv_in.weight", {2}}},
                                 {});
  // SDXL is recognised by its names; a broken file is refused by its UNet's loader.
  const CheckpointInfo xl = inspect_checkpoint(dir.file("sdxl.safetensors"));
  EXPECT_EQ(xl.family, "sdxl");
  EXPECT_TRUE(xl.supported);
  ASSERT_EQ(xl.components.size(), 4u);  // the UNet, both text encoders, the tokenizer: the VAE is too broken to count
  EXPECT_EQ(xl.components[2].name, "text_encoder_2");
  EXPECT_THAT(xl.components[2].where, HasSubstr("sdxl.safetensors (conditioner.embedders.1.model.*)"));
  EXPECT_THAT([&] { Pipeline::load(dir.file("sdxl.safetensors")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("sdxl.safetensors: not a Stable Diffusion UNet: no tensor "
                                                        "'model.diffusion_model.conv_in.weight'")));
  // The refiner (one OpenCLIP encoder, aesthetic scores) is named and refused.
  test::write_random_safetensors(dir.file("refiner.safetensors"),
                                 {{"model.diffusion_model.label_emb.0.0.weight", {2}},
                                  {"conditioner.embedders.0.model.token_embedding.weight", {2}}},
                                 {});
  EXPECT_THAT([&] { Pipeline::load(dir.file("refiner.safetensors")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("the Stable Diffusion XL refiner (one OpenCLIP text encoder, "
                                                        "aesthetic-score conditioning); tiledraw does not run this family yet")));

  // An SD 1.x checkpoint is recognised by its names; a broken one is refused
  // by its UNet's loader, naming what is wrong.
  test::write_random_safetensors(dir.file("sd15.safetensors"),
                                 {{"model.diffusion_model.input_blocks.0.0.weight", {2}},
                                  {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", {2}},
                                  {"first_stage_model.decoder.conv_in.weight", {2}}},
                                 {});
  const CheckpointInfo sd = inspect_checkpoint(dir.file("sd15.safetensors"));
  EXPECT_EQ(sd.family, "sd1");
  EXPECT_TRUE(sd.supported);
  EXPECT_EQ(sd.components[1].name, "text_encoder");
  EXPECT_THAT(sd.components[1].where, HasSubstr("sd15.safetensors (cond_stage_model.transformer.*)"));
  EXPECT_THAT([&] { Pipeline::load(dir.file("sd15.safetensors")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("sd15.safetensors")));

  test::write_random_safetensors(dir.file("other.safetensors"), {{"encoder.a.weight", {2}}, {"encoder.b.weight", {2}},
                                                                 {"head.weight", {2}}}, {});
  EXPECT_THAT([&] { inspect_checkpoint(dir.file("other.safetensors")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("other.safetensors: no model family matches (3 tensors: encoder (2), "
                                                        "head (1)); tiledraw knows sd1, sd2, sdxl, sdxl-refiner, sd3, flux, sd-unet, dit")));
  LoadOptions stated;
  stated.family = "dit";
  EXPECT_THAT([&] { Pipeline::load(dir.file("other.safetensors"), stated); },
              ::testing::ThrowsMessage<Error>(HasSubstr("not a DiT checkpoint: no tensor 'x_embedder.proj.weight'")));
  stated.family = "unet";
  EXPECT_THAT([&] { Pipeline::load(dir.file("other.safetensors"), stated); },
              ::testing::ThrowsMessage<Error>(HasSubstr("unknown model family 'unet' (one of sd1, ")));
}

}  // namespace
}  // namespace tiledraw
