#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <span>

#include "models/lora.h"
#include "tiledraw/accel.h"
#include "test_util.h"
#include "tiledraw/error.h"

namespace tiledraw {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;

void write_f32(const std::string& path, const std::vector<std::pair<std::string, std::vector<float>>>& tensors,
               const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<TensorSource> sources;
  for (size_t i = 0; i < tensors.size(); ++i) {
    sources.push_back(TensorSource::from_bytes(tensors[i].first, DType::F32, shapes[i], std::as_bytes(std::span(tensors[i].second))));
  }
  write_safetensors(path, sources, {});
}

const models::LoraLayer& layer_named(const models::LoraFile& file, const std::string& module) {
  for (const models::LoraLayer& layer : file.layers) {
    if (layer.module == module) return layer;
  }
  throw Error("no layer " + module);
}

// Each format's names land on one component and one module path, with
// underscores for dots; alpha / rank is the scale, 1 without an alpha.
TEST(Lora, ReadsEachFormatsNamesAndScales) {
  test::TempDir dir;
  const std::vector<float> down(2 * 3, 0.5f), up(4 * 2, 0.25f);
  write_f32(dir.file("kohya.safetensors"),
            {{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", down},
             {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", up},
             {"lora_unet_down_blocks_0_attentions_0_proj_in.alpha", {1.0f}},
             {"lora_te2_text_model_encoder_layers_3_mlp_fc1.lora_down.weight", down},
             {"lora_te2_text_model_encoder_layers_3_mlp_fc1.lora_up.weight", up}},
            {{2, 3, 1, 1}, {4, 2, 1, 1}, {}, {2, 3}, {4, 2}});
  const models::LoraFile kohya = models::read_lora(dir.file("kohya.safetensors"));
  ASSERT_EQ(kohya.layers.size(), 2u);
  const models::LoraLayer& proj_in = layer_named(kohya, "down_blocks_0_attentions_0_proj_in");
  EXPECT_EQ(proj_in.component, models::LoraComponent::Unet);
  EXPECT_EQ(proj_in.rank, 2);
  EXPECT_EQ(proj_in.in, 3);
  EXPECT_EQ(proj_in.out, 4);
  EXPECT_FLOAT_EQ(proj_in.scale, 0.5f);
  const models::LoraLayer& fc1 = layer_named(kohya, "text_model_encoder_layers_3_mlp_fc1");
  EXPECT_EQ(fc1.component, models::LoraComponent::TextEncoder2);
  EXPECT_FLOAT_EQ(fc1.scale, 1.0f);

  write_f32(dir.file("peft.safetensors"),
            {{"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", down},
             {"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", up},
             {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight", down},
             {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight", up}},
            {{2, 3}, {4, 2}, {2, 3}, {4, 2}});
  const models::LoraFile peft = models::read_lora(dir.file("peft.safetensors"));
  ASSERT_EQ(peft.layers.size(), 2u);
  EXPECT_EQ(layer_named(peft, "text_model_encoder_layers_0_self_attn_q_proj").component, models::LoraComponent::TextEncoder);
  EXPECT_EQ(layer_named(peft, "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0").component,
            models::LoraComponent::Unet)
      << "diffusers' attention processors: .processor. dropped, to_out is to_out.0";
}

// LoHa's elementwise product of two low-rank products, read as one product
// of rank r1 x r2: hand-computed. w1 = [1, 2]^T [3, 4] = [[3, 4], [6, 8]],
// w2 = I [[1, 1], [2, 0]], their product [[3, 4], [12, 0]], times alpha 2 / r1 1.
TEST(Lora, ReadsLohaAsOneLowRankProduct) {
  test::TempDir dir;
  const std::string key = "lora_unet_down_blocks_0_attentions_0_proj_in";
  write_f32(dir.file("loha.safetensors"),
            {{key + ".hada_w1_a", {1, 2}}, {key + ".hada_w1_b", {3, 4}}, {key + ".hada_w2_a", {1, 0, 0, 1}},
             {key + ".hada_w2_b", {1, 1, 2, 0}}, {key + ".alpha", {2.0f}}},
            {{2, 1}, {1, 2}, {2, 2}, {2, 2}, {}});
  const models::LoraFile file = models::read_lora(dir.file("loha.safetensors"));
  const models::LoraLayer& layer = layer_named(file, "down_blocks_0_attentions_0_proj_in");
  ASSERT_EQ(layer.rank, 2);
  ASSERT_EQ(layer.in, 2);
  ASSERT_EQ(layer.out, 2);
  std::vector<float> update;
  for (int64_t o = 0; o < 2; ++o) {
    for (int64_t i = 0; i < 2; ++i) {
      float sum = 0.0f;
      for (int64_t c = 0; c < 2; ++c) sum += layer.up[static_cast<size_t>(o * 2 + c)] * layer.down[static_cast<size_t>(c * 2 + i)];
      update.push_back(sum * layer.scale);
    }
  }
  EXPECT_THAT(update, ElementsAre(6, 8, 24, 0));  // here r1 x r2 = 2 is the layer's rank: built whole

  // r1 x r2 = 2 below the layer's rank 4: the product of rank 2, against
  // (w1_a w1_b) * (w2_a w2_b) x alpha / r1 computed here.
  const int64_t out = 5, in = 4;
  const std::vector<float> a1 = test::random_floats(out, 11), b1 = test::random_floats(in, 12),
                           a2 = test::random_floats(out * 2, 13), b2 = test::random_floats(2 * in, 14);
  write_f32(dir.file("low.safetensors"),
            {{key + ".hada_w1_a", a1}, {key + ".hada_w1_b", b1}, {key + ".hada_w2_a", a2}, {key + ".hada_w2_b", b2},
             {key + ".alpha", {0.5f}}},
            {{out, 1}, {1, in}, {out, 2}, {2, in}, {}});
  const models::LoraFile low = models::read_lora(dir.file("low.safetensors"));
  const models::LoraLayer& product = low.layers.front();
  ASSERT_EQ(product.rank, 2);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      float got = 0.0f;
      for (int64_t c = 0; c < 2; ++c) got += product.up[static_cast<size_t>(o * 2 + c)] * product.down[static_cast<size_t>(c * in + i)];
      const float second = a2[static_cast<size_t>(o * 2)] * b2[static_cast<size_t>(i)] +
                           a2[static_cast<size_t>(o * 2 + 1)] * b2[static_cast<size_t>(in + i)];
      EXPECT_NEAR(got * product.scale, a1[static_cast<size_t>(o)] * b1[static_cast<size_t>(i)] * second * 0.5f, 1e-5f);
    }
  }
}

TEST(Lora, RefusesWhatItCannotRunNamingFileAndKey) {
  test::TempDir dir;
  const std::vector<float> down(2 * 3, 0.5f), up(4 * 2, 0.25f);
  const std::string key = "lora_unet_mid_block_attentions_0_proj_out";
  const auto refused = [&](const std::vector<std::pair<std::string, std::vector<float>>>& tensors,
                           const std::vector<std::vector<int64_t>>& shapes) {
    write_f32(dir.file("bad.safetensors"), tensors, shapes);
    try {
      models::read_lora(dir.file("bad.safetensors"));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(refused({{key + ".lora_down.weight", down}, {key + ".lora_up.weight", std::vector<float>(4 * 3, 1.0f)}},
                      {{2, 3}, {4, 3}}),
              HasSubstr("bad.safetensors: '" + key + ".lora_up.weight' [4, 3] does not follow '" + key +
                        ".lora_down.weight' [2, 3]"));
  std::vector<float> poisoned = down;
  poisoned[1] = std::nanf("");
  EXPECT_THAT(refused({{key + ".lora_down.weight", poisoned}, {key + ".lora_up.weight", up}}, {{2, 3}, {4, 2}}),
              HasSubstr("'" + key + ".lora_down.weight' holds a value that is not finite"));
  EXPECT_THAT(refused({{key + ".lora_down.weight", down}}, {{2, 3}}), HasSubstr("has no '" + key + ".lora_up.weight'"));
  EXPECT_THAT(refused({{key + ".hada_w1_a", up}}, {{4, 2}}), HasSubstr("'" + key + ".hada_w1_a' has no '" + key + ".hada_w1_b'"));
  EXPECT_THAT(refused({{key + ".hada_w1_a", up}, {key + ".hada_w1_b", down}, {key + ".hada_w2_a", up}, {key + ".hada_w2_b", up}},
                      {{4, 2}, {2, 3}, {4, 2}, {4, 2}}),
              HasSubstr("the LoHa factors of '" + key + "' do not chain"));
  EXPECT_THAT(refused({{key + ".lokr_w1", up}}, {{4, 2}}), HasSubstr("is part of a LoKr adapter"));
  EXPECT_THAT(refused({{"transformer.blocks.0.attn.lora_A.weight", down}, {"transformer.blocks.0.attn.lora_B.weight", up}},
                      {{2, 3}, {4, 2}}),
              HasSubstr("'transformer.blocks.0.attn' is not a layer of a Stable Diffusion UNet or text encoder"));
  EXPECT_THAT(refused({{key + ".lora_down.weight", down}, {key + ".lora_up.weight", up}, {"stray", {1.0f}}},
                      {{2, 3}, {4, 2}, {1}}),
              HasSubstr("'stray' is not part of a LoRA layer"));
}

// A fused layer under two adapters: each update on its part's rows, scaled
// by strength x alpha / rank, the other rows untouched; the two side by side
// along the rank. A float layer gets W + up x down; an 8-bit S one a branch
// whose factors are those, quantized.
TEST(Lora, EachUpdateLandsOnItsRowsOfTheFusedLayer) {
  test::TempDir dir;
  // The memo's hand-checked case: rank 2, alpha 1, strength 0.5.
  write_f32(dir.file("k.safetensors"),
            {{"lora_te_layer_k_proj.lora_down.weight", {1, 2, 3, 4}},
             {"lora_te_layer_k_proj.lora_up.weight", {1, 0, 0, 1, 1, 1}},
             {"lora_te_layer_k_proj.alpha", {1.0f}}},
            {{2, 2}, {3, 2}, {}});
  write_f32(dir.file("q.safetensors"),
            {{"lora_te_layer_q_proj.lora_down.weight", {5, 6}}, {"lora_te_layer_q_proj.lora_up.weight", {1, 2, 3}}},
            {{1, 2}, {3, 1}});
  const auto k = std::make_shared<const models::LoraFile>(models::read_lora(dir.file("k.safetensors")));
  const auto q = std::make_shared<const models::LoraFile>(models::read_lora(dir.file("q.safetensors")));
  const auto accel = make_accelerator("ref");
  const std::vector<float> ones(18, 1.0f);
  const auto fused_parts = [&](const void* identity, runtime::FloatWeight float_weight) {
    return std::vector<models::LayerPart>{{{"layer.q_proj"}, identity, 0, 3, 9, 2, float_weight},
                                          {{"layer.k_proj"}, identity, 3, 3, 9, 2, float_weight},
                                          {{"layer.v_proj"}, identity, 6, 3, 9, 2, float_weight}};
  };

  // Float: merged. q's rows get 2 x 1 x up x [5, 6], k's 0.5 x (1 / 2) x up x
  // [[1, 2], [3, 4]], v's nothing; the base weight (all ones) is not written.
  const models::LowRankAdapters merged(fused_parts(ones.data(), {ones.data(), 9, 2}), {{k, 0.5f}, {q, 2.0f}},
                                       models::LoraComponent::TextEncoder, *accel);
  EXPECT_EQ(merged.matched(), 2u);
  ASSERT_TRUE(merged.layers());
  EXPECT_TRUE(merged.layers()->branches.empty());
  const runtime::FloatWeight& w = merged.layers()->merged.at(ones.data());
  ASSERT_EQ(w.n, 9);
  ASSERT_EQ(w.k, 2);
  EXPECT_THAT(std::vector<float>(w.data, w.data + 18), ElementsAre(11, 13, 21, 25, 31, 37,            // q
                                                                    1.25f, 1.5f, 1.75f, 2, 2, 2.5f,  // k
                                                                    1, 1, 1, 1, 1, 1));              // v
  EXPECT_EQ(ones, std::vector<float>(18, 1.0f));

  // 8-bit S: a branch, down [3, 2] (both adapters' downs stacked, quantized)
  // and up [9, 3] in f32.
  const int fused = 0;  // the 8-bit S layer's identity
  const models::LowRankAdapters beside(fused_parts(&fused, {}), {{k, 0.5f}, {q, 2.0f}}, models::LoraComponent::TextEncoder,
                                       *accel);
  ASSERT_TRUE(beside.layers());
  EXPECT_TRUE(beside.layers()->merged.empty());
  const runtime::LowRankBranch& branch = beside.layers()->branches.at(&fused);
  ASSERT_EQ(branch.down->n(), 3);
  ASSERT_EQ(branch.down->k(), 2);
  std::vector<float> down;
  for (int64_t i = 0; i < 6; ++i) down.push_back(branch.down->source().q[i] * branch.down->source().scale[i / 2]);
  EXPECT_THAT(down, ElementsAre(FloatNear(1, 0.01f), FloatNear(2, 0.01f), FloatNear(3, 0.02f), FloatNear(4, 0.02f),
                                FloatNear(5, 0.03f), FloatNear(6, 0.03f)));
  ASSERT_EQ(branch.up.n, 9);
  ASSERT_EQ(branch.up.k, 3);
  EXPECT_THAT(std::vector<float>(branch.up.data, branch.up.data + 27),
              ElementsAre(0, 0, 2, 0, 0, 4, 0, 0, 6,                    // q
                          0.25f, 0, 0, 0, 0.25f, 0, 0.25f, 0.25f, 0,    // k
                          0, 0, 0, 0, 0, 0, 0, 0, 0));                  // v

  // A layer the parts do not have is listed, not applied.
  const models::LowRankAdapters other({{{"layer.v_proj"}, &fused, 6, 3, 9, 2}}, {{k, 1.0f}}, models::LoraComponent::TextEncoder,
                                      *accel);
  EXPECT_EQ(other.matched(), 0u);
  EXPECT_THAT(other.unmatched(), ElementsAre(dir.file("k.safetensors") + ": lora_te_layer_k_proj"));
  EXPECT_FALSE(other.layers());
  // Factors of the wrong width for the part they name are an error.
  EXPECT_THAT([&] {
    models::LowRankAdapters({{{"layer.k_proj"}, &fused, 3, 3, 9, 5}}, {{k, 1.0f}}, models::LoraComponent::TextEncoder, *accel);
  }, ::testing::ThrowsMessage<Error>(HasSubstr("k.safetensors: 'lora_te_layer_k_proj' updates a [3, 2] weight, "
                                               "but the model's 'layer.k_proj' is [3, 5]")));
}

}  // namespace
}  // namespace tiledraw
