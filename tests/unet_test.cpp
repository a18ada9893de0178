// The Stable Diffusion UNet: its config from shapes or a diffusers config,
// both layouts giving the same output, refused files; and, when
// tests/reference/test_unet.py hands it cases, the comparison with PyTorch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <span>
#include <tuple>

#include "models/lora.h"
#include "models/unet.h"
#include "runtime/executor.h"
#include "test_util.h"
#include "tiledraw/convert.h"
#include "tiledraw/error.h"
#include "tiledraw/memory.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

// One tensor under diffusers' name and the original layout's.
struct TinyTensor {
  std::string diffusers, ldm;
  std::vector<int64_t> shape;
};

// A two-level SD 1.x-like UNet (channels 32/64, one resnet per down block,
// attention at the first level and in the mid block, context width 32, 1x1
// convolution projections) that shape inference reads as 8 heads and 32
// groups. Written out by hand in both layouts, independently of the loader's
// rename. With `sd2_like`, channels 64/128 and linear projections.
std::vector<TinyTensor> tiny_unet(bool sd2_like = false) {
  const int64_t c0 = sd2_like ? 64 : 32, c1 = 2 * c0, time = 4 * c0;
  std::vector<TinyTensor> t;
  const auto add = [&](const std::string& d, const std::string& l, std::vector<int64_t> shape) { t.push_back({d, l, shape}); };
  const auto layer = [&](const std::string& d, const std::string& l, std::vector<int64_t> shape, bool bias = true) {
    add(d + ".weight", l + ".weight", shape);
    if (bias) add(d + ".bias", l + ".bias", {shape[0]});
  };
  const auto norm = [&](const std::string& d, const std::string& l, int64_t c) { layer(d, l, {c}); };
  const auto resnet = [&](const std::string& d, const std::string& l, int64_t cin, int64_t cout) {
    norm(d + ".norm1", l + ".in_layers.0", cin);
    layer(d + ".conv1", l + ".in_layers.2", {cout, cin, 3, 3});
    layer(d + ".time_emb_proj", l + ".emb_layers.1", {cout, time});
    norm(d + ".norm2", l + ".out_layers.0", cout);
    layer(d + ".conv2", l + ".out_layers.3", {cout, cout, 3, 3});
    if (cin != cout) layer(d + ".conv_shortcut", l + ".skip_connection", {cout, cin, 1, 1});
  };
  const auto transformer = [&](const std::string& d, const std::string& l, int64_t c) {
    const auto same = [&](const std::string& part, std::vector<int64_t> shape, bool bias = true) {
      layer(d + part, l + part, shape, bias);
    };
    same(".norm", {c});
    same(".proj_in", sd2_like ? std::vector<int64_t>{c, c} : std::vector<int64_t>{c, c, 1, 1});
    for (const char* n : {".norm1", ".norm2", ".norm3"}) same(std::string(".transformer_blocks.0") + n, {c});
    const std::string b = ".transformer_blocks.0.";
    for (const char* a : {"attn1", "attn2"}) {
      const int64_t kv = std::string(a) == "attn1" ? c : 32;
      same(b + a + ".to_q", {c, c}, false);
      same(b + a + ".to_k", {c, kv}, false);
      same(b + a + ".to_v", {c, kv}, false);
      same(b + a + ".to_out.0", {c, c});
    }
    same(b + "ff.net.0.proj", {8 * c, c});
    same(b + "ff.net.2", {c, 4 * c});
    same(".proj_out", sd2_like ? std::vector<int64_t>{c, c} : std::vector<int64_t>{c, c, 1, 1});
  };
  layer("conv_in", "input_blocks.0.0", {c0, 4, 3, 3});
  layer("time_embedding.linear_1", "time_embed.0", {time, c0});
  layer("time_embedding.linear_2", "time_embed.2", {time, time});
  resnet("down_blocks.0.resnets.0", "input_blocks.1.0", c0, c0);
  transformer("down_blocks.0.attentions.0", "input_blocks.1.1", c0);
  layer("down_blocks.0.downsamplers.0.conv", "input_blocks.2.0.op", {c0, c0, 3, 3});
  resnet("down_blocks.1.resnets.0", "input_blocks.3.0", c0, c1);
  resnet("mid_block.resnets.0", "middle_block.0", c1, c1);
  transformer("mid_block.attentions.0", "middle_block.1", c1);
  resnet("mid_block.resnets.1", "middle_block.2", c1, c1);
  resnet("up_blocks.0.resnets.0", "output_blocks.0.0", c1 + c1, c1);  // the skips: down_blocks.1's resnet,
  resnet("up_blocks.0.resnets.1", "output_blocks.1.0", c1 + c0, c1);  // the downsampler,
  layer("up_blocks.0.upsamplers.0.conv", "output_blocks.1.1.conv", {c1, c1, 3, 3});
  resnet("up_blocks.1.resnets.0", "output_blocks.2.0", c1 + c0, c0);  // down_blocks.0's resnet,
  transformer("up_blocks.1.attentions.0", "output_blocks.2.1", c0);
  resnet("up_blocks.1.resnets.1", "output_blocks.3.0", c0 + c0, c0);  // conv_in
  transformer("up_blocks.1.attentions.1", "output_blocks.3.1", c0);
  layer("conv_norm_out", "out.0", {c0});
  layer("conv_out", "out.2", {4, c0, 3, 3});
  return t;
}

const std::string kCheckpointPrefix = "model.diffusion_model.";

// The tiny UNet with the same random values in either layout (the original
// one under a checkpoint's prefix), with `edit` applied to the list first.
std::string write_tiny_unet(const test::TempDir& dir, models::UNetLayout layout, const std::map<std::string, std::string>& metadata = {},
                            const std::function<void(std::vector<TinyTensor>&)>& edit = {}, bool sd2_like = false) {
  std::vector<TinyTensor> tensors = tiny_unet(sd2_like);
  if (edit) edit(tensors);
  test::TensorShapes shapes;
  for (const TinyTensor& t : tensors) {
    shapes.push_back({layout == models::UNetLayout::Diffusers ? t.diffusers : kCheckpointPrefix + t.ldm, t.shape});
  }
  const std::string path = dir.file(layout == models::UNetLayout::Diffusers ? "unet.safetensors" : "checkpoint.safetensors");
  test::write_random_safetensors(path, shapes, metadata, 1, 0.2f);
  return path;
}

models::WeightView view_of(const SafetensorsFile& file, models::UNetLayout layout) {
  if (layout == models::UNetLayout::Diffusers) return file;
  return models::WeightView(file, kCheckpointPrefix, {}, models::model_config_json(file));
}

std::vector<float> forward(const models::UNetModel& model, const Accelerator& accel, const models::GraphShape& shape,
                           const std::vector<float>& latents, const std::vector<float>& timesteps,
                           const std::vector<float>& context) {
  const auto built = model.build(shape);
  ProgramCache cache;
  runtime::Executor exec(built->graph, accel, cache);
  exec.run({latents.data(), timesteps.data(), context.data()});
  const auto& out = built->graph.values()[static_cast<size_t>(built->output)];
  EXPECT_EQ(out.shape, (std::vector<int64_t>{shape.batch, model.config().out_channels, shape.height, shape.width}));
  return {exec.data(built->output), exec.data(built->output) + out.numel()};
}

std::vector<float> forward(const models::UNetModel& model, const Accelerator& accel, const models::GraphShape& shape) {
  const auto& c = model.config();
  std::vector<float> timesteps;
  for (int64_t b = 0; b < shape.batch; ++b) timesteps.push_back(999.0f - 437.5f * static_cast<float>(b));
  return forward(model, accel, shape,
                 test::random_floats(static_cast<size_t>(shape.batch * c.in_channels * shape.height * shape.width), 7),
                 timesteps,
                 test::random_floats(static_cast<size_t>(shape.batch * shape.context_tokens * c.cross_attention_dim), 8));
}

TEST(UNetModel, InfersAnSd1ConfigFromTheShapesInEitherLayout) {
  test::TempDir dir;
  for (const models::UNetLayout layout : {models::UNetLayout::Diffusers, models::UNetLayout::Original}) {
    const SafetensorsFile file = SafetensorsFile::open(write_tiny_unet(dir, layout));
    const models::WeightView view = view_of(file, layout);
    EXPECT_TRUE(models::holds_sd_unet(view));
    EXPECT_EQ(models::unet_layout(view), layout);
    const models::UNetConfig c = models::read_unet_config(view);
    EXPECT_EQ(c.layout, layout);
    EXPECT_EQ(c.in_channels, 4);
    EXPECT_EQ(c.out_channels, 4);
    EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(c.layers_per_block, 1);
    EXPECT_EQ(c.down_attention, (std::vector<bool>{true, false}));
    EXPECT_EQ(c.up_attention, (std::vector<bool>{true, false}));
    EXPECT_EQ(c.heads, (std::vector<int64_t>{8, 8}));
    EXPECT_EQ(c.transformer_layers, (std::vector<int64_t>{1, 1}));
    EXPECT_EQ(c.cross_attention_dim, 32);
    EXPECT_FALSE(c.linear_projection);
    EXPECT_EQ(c.norm_groups, 32);
  }
}

TEST(UNetModel, InfersHeadsOf64ForLinearProjections) {
  test::TempDir dir;
  const SafetensorsFile file = SafetensorsFile::open(write_tiny_unet(dir, models::UNetLayout::Original, {}, {}, true));
  const models::UNetConfig c = models::read_unet_config(view_of(file, models::UNetLayout::Original));
  EXPECT_TRUE(c.linear_projection);
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(c.heads, (std::vector<int64_t>{1, 2}));
  const auto accel = make_accelerator("auto");
  const models::UNetModel model(view_of(file, models::UNetLayout::Original), *accel, Precision::Float, {});
  const std::vector<float> out = forward(model, *accel, {1, 4, 4, 77});
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float v) { return std::isfinite(v); }));
}

TEST(UNetModel, BothLayoutsGiveTheSameOutputAtAnyMultipleOfTheLatentFactor) {
  test::TempDir dir;
  const auto accel = make_accelerator("auto");
  const SafetensorsFile diffusers = SafetensorsFile::open(write_tiny_unet(dir, models::UNetLayout::Diffusers));
  const SafetensorsFile original = SafetensorsFile::open(write_tiny_unet(dir, models::UNetLayout::Original));
  for (const Precision precision : {Precision::Float, Precision::Int8}) {
    const models::UNetModel a(view_of(diffusers, models::UNetLayout::Diffusers), *accel, precision, {});
    const models::UNetModel b(view_of(original, models::UNetLayout::Original), *accel, precision, {});
    EXPECT_EQ(a.latent_multiple(), 2);
    for (const models::GraphShape shape : {models::GraphShape{2, 6, 4, 77}, models::GraphShape{2, 2, 8, 154}}) {
      const std::vector<float> out = forward(a, *accel, shape);
      EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float v) { return std::isfinite(v); }));
      EXPECT_GT(*std::max_element(out.begin(), out.end()), 0.0f);
      EXPECT_EQ(forward(b, *accel, shape), out) << shape.height << " x " << shape.width;
    }
  }
}

// An adapter runs beside the 8-bit S weights: it changes the output, and
// leaves the weights bit for bit as they were, so that the same model without
// it gives exactly what it gave before.
TEST(UNetModel, AdaptersRunBesideTheWeightsAndLeaveThemAsTheyWere) {
  test::TempDir dir;
  const auto accel = make_accelerator("auto");
  const SafetensorsFile file = SafetensorsFile::open(write_tiny_unet(dir, models::UNetLayout::Diffusers));
  const models::UNetModel model(view_of(file, models::UNetLayout::Diffusers), *accel, Precision::Int8, {});
  const auto snapshot = [&] {
    std::vector<int8_t> bytes;
    for (const models::LayerPart& part : model.layer_parts()) {
      const WeightView& w = static_cast<const PackedWeight*>(part.layer)->source();
      if (w.q) bytes.insert(bytes.end(), w.q, w.q + w.n * w.k);
      const auto* scales = reinterpret_cast<const int8_t*>(w.scale);
      bytes.insert(bytes.end(), scales, scales + w.n * static_cast<int64_t>(sizeof(float)));
    }
    return bytes;
  };
  const std::vector<int8_t> before = snapshot();
  ASSERT_FALSE(before.empty());
  const models::GraphShape shape{2, 4, 4, 77};
  const std::vector<float> plain = forward(model, *accel, shape);

  const auto part = std::find_if(model.layer_parts().begin(), model.layer_parts().end(), [](const models::LayerPart& p) {
    return p.names.front().find("attn1.to_v") != std::string::npos;
  });
  ASSERT_NE(part, model.layer_parts().end());
  const std::string key = "lora_unet_" + part->names.front();
  const std::vector<float> down = test::random_floats(static_cast<size_t>(2 * part->cols), 3);
  const std::vector<float> up = test::random_floats(static_cast<size_t>(part->rows * 2), 4);
  write_safetensors(dir.file("lora.safetensors"),
                    {TensorSource::from_bytes(key + ".lora_down.weight", DType::F32, {2, part->cols}, std::as_bytes(std::span(down))),
                     TensorSource::from_bytes(key + ".lora_up.weight", DType::F32, {part->rows, 2}, std::as_bytes(std::span(up)))},
                    {});
  const auto lora = std::make_shared<const models::LoraFile>(models::read_lora(dir.file("lora.safetensors")));
  const models::LowRankAdapters adapters(model.layer_parts(), {{lora, 1.0f}}, models::LoraComponent::Unet, *accel);
  ASSERT_EQ(adapters.matched(), 1u) << key;
  models::GraphShape adapted = shape;
  adapted.adapters = adapters.layers();
  EXPECT_NE(forward(model, *accel, adapted), plain);
  EXPECT_EQ(snapshot(), before) << "the 8-bit S weights and scales are untouched";
  EXPECT_EQ(forward(model, *accel, shape), plain);
}

// Weights stored as panels (read in place, stacked when diffusers splits q, k
// and v) give exactly what the same weights stored as rows give.
TEST(UNetModel, StoredPanelsGiveTheOutputsOfStoredRows) {
  test::TempDir dir;
  const auto accel = make_accelerator("auto");
  for (const models::UNetLayout layout : {models::UNetLayout::Diffusers, models::UNetLayout::Original}) {
    const std::string source = write_tiny_unet(dir, layout, {}, {}, true);
    ConvertOptions as_rows;
    as_rows.layout = Layout8BitS::Rows;
    convert_to_8bit_s(source, dir.file("rows.safetensors"), as_rows);
    const ConvertReport report = convert_to_8bit_s(source, dir.file("panels.safetensors"), {});
    EXPECT_GT(report.panels, 20u);
    EXPECT_LT(report.panels, report.quantized);  // attn2's keys and values read 32 columns: rows
    const SafetensorsFile rows = SafetensorsFile::open(dir.file("rows.safetensors"));
    const SafetensorsFile panels = SafetensorsFile::open(dir.file("panels.safetensors"));
    for (const Precision precision : {Precision::AsStored, Precision::Float}) {
      const uint64_t reserved_before = memory_reserved();
      const models::UNetModel a(view_of(rows, layout), *accel, precision, {});
      const uint64_t reserved_by_rows = memory_reserved() - reserved_before;
      const models::UNetModel b(view_of(panels, layout), *accel, precision, {});
      const uint64_t reserved_by_panels = memory_reserved() - reserved_before - reserved_by_rows;
      // Panels read in place are the mapped file's: the memory limit does not count them.
      if (precision == Precision::AsStored && isa_level() >= IsaLevel::Avx512 && cpu_features().avx512_vnni) {
        EXPECT_LT(reserved_by_panels, reserved_by_rows);
      } else {
        EXPECT_EQ(reserved_by_panels, reserved_by_rows);
      }
      const std::vector<float> out = forward(a, *accel, {2, 4, 6, 77});
      EXPECT_GT(*std::max_element(out.begin(), out.end()), 0.0f);
      EXPECT_EQ(forward(b, *accel, {2, 4, 6, 77}), out);
    }
  }
}

TEST(UNetModel, OutputIsTheLastConvolutionsBiasWhenItsWeightsAreZero) {
  // conv_out's weights zero: every output value is its bias, whatever the rest computes.
  test::TempDir dir;
  const std::vector<float> bias = {0.5f, -2.0f, 3.0f, 0.25f};
  const std::vector<float> zeros(4 * 32 * 9, 0.0f);
  std::vector<TensorSource> tensors;
  std::vector<std::vector<float>> storage;
  storage.reserve(tiny_unet().size());
  uint32_t seed = 1;
  for (const TinyTensor& t : tiny_unet()) {
    int64_t n = 1;
    for (const int64_t d : t.shape) n *= d;
    storage.push_back(t.diffusers == "conv_out.weight" ? zeros : t.diffusers == "conv_out.bias" ? bias
                                                                 : test::random_floats(static_cast<size_t>(n), seed++, 0.2f));
    tensors.push_back(TensorSource::from_bytes(t.diffusers, DType::F32, t.shape, test::bytes_of(storage.back())));
  }
  write_safetensors(dir.file("unet.safetensors"), std::move(tensors), {});
  const SafetensorsFile file = SafetensorsFile::open(dir.file("unet.safetensors"));
  const auto accel = make_accelerator("auto");
  const models::UNetModel model(file, *accel, Precision::Float, {});
  const std::vector<float> out = forward(model, *accel, {2, 4, 6, 77});
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], bias[(i / 24) % 4]) << i;
}

TEST(UNetModel, TheDiffusersConfigWinsOverTheShapes) {
  test::TempDir dir;
  const std::string config =
      R"({"attention_head_dim": [2, 4], "norm_num_groups": 8, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
          "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "flip_sin_to_cos": true, "addition_embed_type": null})";
  const SafetensorsFile file = SafetensorsFile::open(write_tiny_unet(dir, models::UNetLayout::Diffusers, {{"config", config}}));
  const models::UNetConfig c = models::read_unet_config(file);
  EXPECT_EQ(c.heads, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(c.norm_groups, 8);
  const auto accel = make_accelerator("auto");
  const models::UNetModel model(file, *accel, Precision::AsStored, {});
  EXPECT_THAT(model.description(), HasSubstr("channels 32/64, 1 resnets per block, heads 2/4, context 32"));
  EXPECT_EQ(model.trained_latent_size(), 64);
  EXPECT_EQ(model.latent_format().scaling_factor, 0.18215);
}

TEST(UNetModel, RefusesBadFilesConfigsAndSizes) {
  test::TempDir dir;
  const auto accel = make_accelerator("auto");
  const auto load_error = [&](const std::string& path, models::UNetLayout layout) {
    const SafetensorsFile file = SafetensorsFile::open(path);
    try {
      const models::UNetModel model(view_of(file, layout), *accel, Precision::AsStored, {});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("loaded");
  };
  using models::UNetLayout;
  write_safetensors(dir.file("empty.safetensors"), {}, {});
  EXPECT_THAT(load_error(dir.file("empty.safetensors"), UNetLayout::Diffusers),
              HasSubstr("empty.safetensors: not a Stable Diffusion UNet: no tensor 'conv_in.weight'"));

  const auto without = [](const std::string& name) {
    return [name](std::vector<TinyTensor>& t) { std::erase_if(t, [&](const TinyTensor& x) { return x.diffusers == name; }); };
  };
  const auto reshaped = [](const std::string& name, std::vector<int64_t> shape) {
    return [name, shape](std::vector<TinyTensor>& t) {
      for (TinyTensor& x : t) {
        if (x.diffusers == name) x.shape = shape;
      }
    };
  };
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {}, without("up_blocks.1.resnets.1.conv2.bias")),
                         UNetLayout::Diffusers),
              HasSubstr("unet.safetensors: not a Stable Diffusion UNet: no tensor 'up_blocks.1.resnets.1.conv2.bias'"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Original, {}, without("up_blocks.1.attentions.1.proj_in.weight")),
                         UNetLayout::Original),
              HasSubstr("checkpoint.safetensors: not a Stable Diffusion UNet: no tensor "
                        "'model.diffusion_model.output_blocks.3.1.proj_in.weight'"));
  const std::string key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight";
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {}, reshaped(key, {32, 16})), UNetLayout::Diffusers),
              HasSubstr("unet.safetensors: '" + key + "' has shape [32, 16], expected [32, 32]"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Original, {}, reshaped("conv_in.weight", {32, 4, 3})),
                         UNetLayout::Original),
              HasSubstr("'model.diffusion_model.input_blocks.0.0.weight' and 'model.diffusion_model.out.2.weight' must be 4-D"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {}, reshaped("conv_norm_out.bias", {31})),
                         UNetLayout::Diffusers),
              HasSubstr("'conv_norm_out.bias' has shape [31], expected [32]"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {{"config", R"({"block_out_channels": [32, 128]})"}}),
                         UNetLayout::Diffusers),
              HasSubstr("the config disagrees with the tensor shapes (channels 32/64"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {{"config", R"({"attention_head_dim": 3})"}}),
                         UNetLayout::Diffusers),
              HasSubstr("3 heads and 1 transformer layers do not fit block width 32"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {{"config", R"({"addition_embed_type": "text_time"})"}}),
                         UNetLayout::Diffusers),
              HasSubstr("the config's addition_embed_type \"text_time\" disagrees with the tensors (no add_embedding)"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {{"config", R"({"addition_embed_type": "image"})"}}),
                         UNetLayout::Diffusers),
              HasSubstr("config 'addition_embed_type' = \"image\" is not supported (SDXL's is \"text_time\")"));
  EXPECT_THAT(load_error(write_tiny_unet(dir, UNetLayout::Diffusers, {},
                                         [](std::vector<TinyTensor>& t) { t.push_back({"add_embedding.linear_1.weight", "", {8, 8}}); }),
                         UNetLayout::Diffusers),
              HasSubstr("'add_embedding.linear_1.weight' reads 8 values, not a pooled text vector and 6 sizes of 256"));

  const SafetensorsFile file = SafetensorsFile::open(write_tiny_unet(dir, UNetLayout::Diffusers));
  const models::UNetModel model(file, *accel, Precision::AsStored, {});
  EXPECT_THAT([&] { model.build({1, 7, 8, 77}); }, ThrowsMessage<Error>(HasSubstr("positive multiples of 2")));
  EXPECT_THAT([&] { model.build({1, 8, 8, 0}); }, ThrowsMessage<Error>(HasSubstr("the context must have tokens")));
}

// The comparison with PyTorch: tests/reference/test_unet.py writes tiny random
// UNets, their inputs and PyTorch's outputs into a folder, lists them in
// cases.json, and runs this test with TILEDRAW_UNET_REFERENCE naming the folder.
TEST(UNetReference, MatchesPyTorch) {
  const char* folder = std::getenv("TILEDRAW_UNET_REFERENCE");
  if (!folder) GTEST_SKIP() << "run by tests/reference/test_unet.py";
  const std::string dir = folder;
  const nlohmann::json cases = nlohmann::json::parse(test::read_text(dir + "/cases.json"));
  const double float_bound = cases["float_bound"], int8_bound = cases["int8_bound"];
  const auto accel = make_accelerator("auto");
  const auto floats = [](const SafetensorsFile& file, const std::string& name) {
    const TensorInfo* t = file.find(name);
    EXPECT_TRUE(t) << name;
    std::vector<float> values(static_cast<size_t>(t ? t->numel() : 0));
    if (t) convert_to_f32(t->dtype, file.data(*t).data(), values.data(), values.size());
    return values;
  };
  test::TempDir converted;
  ConvertOptions every_matrix;
  every_matrix.min_elements = 0;
  for (const auto& c : cases["cases"]) {
    const std::string model_path = dir + "/" + c["model"].get<std::string>();
    // Stored as 8-bit S, every matrix: the loader's other 8-bit path (int8 q, k, v stacked).
    convert_to_8bit_s(model_path, converted.file("model.safetensors"), every_matrix);
    const SafetensorsFile io = SafetensorsFile::open(dir + "/" + c["io"].get<std::string>());
    const std::vector<int64_t> sample_shape = io.find("sample")->shape;
    const models::GraphShape shape{sample_shape[0], sample_shape[2], sample_shape[3], io.find("encoder_hidden_states")->shape[1]};
    const std::vector<float> expected = floats(io, "out");
    const std::tuple<const char*, std::string, Precision> runs[] = {
        {"float", model_path, Precision::Float},
        {"8-bit S at load", model_path, Precision::Int8},
        {"8-bit S file", converted.file("model.safetensors"), Precision::AsStored},
    };
    for (const auto& [label, path, precision] : runs) {
      const SafetensorsFile model_file = SafetensorsFile::open(path);
      const models::WeightView view(model_file, c["prefix"].get<std::string>(), {}, models::model_config_json(model_file));
      const models::UNetModel model(view, *accel, precision, {});
      const std::vector<float> out = forward(model, *accel, shape, floats(io, "sample"), floats(io, "timestep"),
                                             floats(io, "encoder_hidden_states"));
      ASSERT_EQ(out.size(), expected.size());
      double largest = 0, worst = 0, diff = 0, norm = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        largest = std::max(largest, std::abs(double(expected[i])));
        worst = std::max(worst, std::abs(double(out[i]) - expected[i]));
        diff += (double(out[i]) - expected[i]) * (double(out[i]) - expected[i]);
        norm += double(expected[i]) * expected[i];
      }
      const bool on_float = precision == Precision::Float;
      const double max_error = worst / largest, rms_error = std::sqrt(diff / norm);
      std::printf("%-15s %-28s max %.2e  rms %.2e  (bound on %s: %.0e)\n", label,
                  c["name"].get<std::string>().c_str(), max_error, rms_error, on_float ? "max" : "rms",
                  on_float ? float_bound : int8_bound);
      EXPECT_LE(on_float ? max_error : rms_error, on_float ? float_bound : int8_bound) << c["name"] << ", " << label;
    }
  }
}

}  // namespace
}  // namespace tiledraw
