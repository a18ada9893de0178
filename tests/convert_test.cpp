#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "test_util.h"
#include "tiledraw/convert.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;

// A float model file with one tensor of every kind the converter must tell apart.
class ConvertMixedFile : public ::testing::Test {
 protected:
  void SetUp() override {
    add_f32("blocks.0.attn.qkv.weight", {96, 64});          // linear: quantized
    add_f32("blocks.0.attn.qkv.bias", {96});                // bias: kept
    add_f32("blocks.0.norm1.weight", {64});                 // norm: kept
    add_f16("x_embedder.proj.weight", {64, 16, 2, 2});      // conv, F16 source: quantized
    add_bf16("t_embedder.mlp.0.weight", {64, 128});         // linear, BF16 source: quantized
    add_f32("y_embedder.embedding_table.weight", {11, 64}); // embedding: kept
    add_f32("final_layer.linear.weight", {8, 64});          // below the size threshold: kept
    add_f32("pos_embed", {1, 16, 64});                      // buffer: kept
    add_f32("blocks.0.mlp.fc1.weight", {256, 64});          // matched by --keep: kept
    add_f32("proj_out", {64, 64});                          // not named as a weight: kept
    const std::vector<int64_t> steps = {1000};
    owned_.push_back(std::vector<std::byte>(reinterpret_cast<const std::byte*>(steps.data()),
                                            reinterpret_cast<const std::byte*>(steps.data()) + 8));
    sources_.push_back(TensorSource::from_bytes("num_steps", DType::I64, {1}, owned_.back()));
    write_safetensors(dir_.file("in.safetensors"), sources_, {{"architecture", "dit"}, {"config", "{\"depth\":1}"}});
  }

  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<std::byte> bytes) {
    owned_.push_back(std::move(bytes));
    sources_.push_back(TensorSource::from_bytes(name, dtype, std::move(shape), owned_.back()));
  }
  static size_t numel(const std::vector<int64_t>& shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
  std::vector<float> weights(const std::vector<int64_t>& shape) {
    return test::random_floats(numel(shape), static_cast<uint32_t>(owned_.size() + 1), 0.05f);
  }
  void add_f32(const std::string& name, std::vector<int64_t> shape) {
    const std::vector<float> w = weights(shape);
    const auto b = test::bytes_of(w);
    add(name, DType::F32, std::move(shape), {b.begin(), b.end()});
  }
  template <uint16_t (*Encode)(float)>
  void add_16bit(const std::string& name, DType dtype, std::vector<int64_t> shape) {
    std::vector<uint16_t> bits;
    for (float x : weights(shape)) bits.push_back(Encode(x));
    const auto b = test::bytes_of(bits);
    add(name, dtype, std::move(shape), {b.begin(), b.end()});
  }
  void add_f16(const std::string& name, std::vector<int64_t> shape) { add_16bit<float_to_half>(name, DType::F16, shape); }
  void add_bf16(const std::string& name, std::vector<int64_t> shape) {
    add_16bit<float_to_bf16>(name, DType::BF16, shape);
  }

  ConvertOptions options() const {
    ConvertOptions o;
    o.keep_patterns = {"blocks.*.mlp.*"};
    return o;
  }

  test::TempDir dir_;
  std::vector<std::vector<std::byte>> owned_;
  std::vector<TensorSource> sources_;
};

TEST_F(ConvertMixedFile, QuantizesExactlyTheMatrixWeights) {
  const ConvertReport report = convert_to_8bit_s(dir_.file("in.safetensors"), dir_.file("out.safetensors"), options());
  const SafetensorsFile in = SafetensorsFile::open(dir_.file("in.safetensors"));
  const SafetensorsFile out = SafetensorsFile::open(dir_.file("out.safetensors"));

  const std::set<std::string> expected = {"blocks.0.attn.qkv.weight", "x_embedder.proj.weight", "t_embedder.mlp.0.weight"};
  std::set<std::string> quantized;
  for (const Weight8BitS& w : find_8bit_s_weights(out)) quantized.insert(w.values->name);
  EXPECT_EQ(quantized, expected);
  EXPECT_EQ(report.quantized, 3u);
  EXPECT_EQ(out.tensors().size(), in.tensors().size() + 3);

  for (const TensorInfo& t : in.tensors()) {
    const TensorInfo& o = out.at(t.name);
    EXPECT_EQ(o.shape, t.shape) << t.name;
    if (expected.count(t.name)) {
      // Panels where rows and columns are multiples of 64; qkv's 96 rows are not.
      EXPECT_EQ(o.dtype, t.name == "blocks.0.attn.qkv.weight" ? DType::I8 : DType::U8) << t.name;
      EXPECT_EQ(out.at(t.name + "_scale").shape, std::vector<int64_t>{t.shape[0]});
      EXPECT_EQ(out.at(t.name + "_scale").dtype, DType::F32);
    } else {
      EXPECT_EQ(o.dtype, t.dtype) << t.name;
      ASSERT_EQ(o.nbytes, t.nbytes);
      EXPECT_EQ(std::memcmp(out.data(o).data(), in.data(t).data(), t.nbytes), 0) << t.name << " must be copied as is";
    }
  }
  std::map<std::string, std::string> reasons;
  std::map<std::string, TensorAction> actions;
  for (const ConvertedTensor& t : report.tensors) {
    reasons[t.name] = t.reason;
    actions[t.name] = t.action;
  }
  EXPECT_EQ(reasons["y_embedder.embedding_table.weight"], "embedding table");
  EXPECT_EQ(reasons["blocks.0.mlp.fc1.weight"], "matches the keep pattern 'blocks.*.mlp.*'");
  EXPECT_EQ(reasons["final_layer.linear.weight"], "fewer than 4096 elements");
  EXPECT_EQ(reasons["blocks.0.attn.qkv.bias"], "rank 1, not a matrix");
  EXPECT_EQ(reasons["proj_out"], "not a weight");
  EXPECT_EQ(actions["num_steps"], TensorAction::Copied);
}

TEST_F(ConvertMixedFile, QuantizedWeightsReconstructTheirSourceWithinHalfAScale) {
  const ConvertReport report = convert_to_8bit_s(dir_.file("in.safetensors"), dir_.file("out.safetensors"), options());
  const SafetensorsFile in = SafetensorsFile::open(dir_.file("in.safetensors"));
  const SafetensorsFile out = SafetensorsFile::open(dir_.file("out.safetensors"));
  for (const Weight8BitS& w : find_8bit_s_weights(out)) {
    const TensorInfo& source = in.at(w.values->name);
    std::vector<float> original(static_cast<size_t>(source.numel()));
    convert_to_f32(source.dtype, in.data(source).data(), original.data(), original.size());
    const std::vector<float> scales = w.load_scales(out);
    const std::vector<int8_t> q = w.read_rows(out);
    double err = 0, norm = 0;
    for (size_t i = 0; i < original.size(); ++i) {
      const float s = scales[i / static_cast<size_t>(w.cols)];
      const float recon = static_cast<float>(q[i]) * s;
      ASSERT_TRUE(test::within_half_scale(original[i], q[i], s)) << w.values->name << " element " << i;
      err += (original[i] - recon) * (original[i] - recon);
      norm += original[i] * original[i];
    }
    const auto reported = std::find_if(report.tensors.begin(), report.tensors.end(),
                                       [&](const ConvertedTensor& t) { return t.name == w.values->name; });
    ASSERT_NE(reported, report.tensors.end());
    EXPECT_NEAR(reported->relative_error, std::sqrt(err / norm), 1e-9);
  }
  EXPECT_GT(report.worst_relative_error, 0.0);
  EXPECT_LT(report.worst_relative_error, 0.01);  // int8 on Gaussian rows: about 0.006
  EXPECT_LE(report.mean_relative_error, report.worst_relative_error);
}

TEST_F(ConvertMixedFile, WritesTheFormatMetadataAndKeepsTheSources) {
  ConvertOptions o = options();
  o.config_json = R"({"depth": 2, "hidden_size": 64})";
  convert_to_8bit_s(dir_.file("in.safetensors"), dir_.file("out.safetensors"), o);
  const SafetensorsFile out = SafetensorsFile::open(dir_.file("out.safetensors"));
  EXPECT_EQ(out.metadata().at("format"), "8bit-s");
  EXPECT_EQ(out.metadata().at("format_version"), "2");
  EXPECT_EQ(out.metadata().at("architecture"), "dit");
  EXPECT_EQ(nlohmann::json::parse(out.metadata().at("config"))["hidden_size"], 64);
  EXPECT_THAT(out.metadata().at("converted_by"), HasSubstr("tiledraw"));
}

TEST_F(ConvertMixedFile, ConvertingTwiceChangesNothing) {
  convert_to_8bit_s(dir_.file("in.safetensors"), dir_.file("once.safetensors"), options());
  const ConvertReport again = convert_to_8bit_s(dir_.file("once.safetensors"), dir_.file("twice.safetensors"), options());
  EXPECT_EQ(again.quantized, 0u);
  const SafetensorsFile once = SafetensorsFile::open(dir_.file("once.safetensors"));
  const SafetensorsFile twice = SafetensorsFile::open(dir_.file("twice.safetensors"));
  ASSERT_EQ(once.tensors().size(), twice.tensors().size());
  for (const TensorInfo& t : once.tensors()) {
    const TensorInfo& u = twice.at(t.name);
    ASSERT_EQ(t.nbytes, u.nbytes);
    EXPECT_EQ(std::memcmp(once.data(t).data(), twice.data(u).data(), t.nbytes), 0) << t.name;
  }
}

TEST_F(ConvertMixedFile, WritesRowsWhenAskedAndReLaysEitherWayWithTheSameValues) {
  ConvertOptions as_rows = options();
  as_rows.layout = Layout8BitS::Rows;
  convert_to_8bit_s(dir_.file("in.safetensors"), dir_.file("rows.safetensors"), as_rows);
  const ConvertReport relaid = convert_to_8bit_s(dir_.file("rows.safetensors"), dir_.file("panels.safetensors"), options());
  convert_to_8bit_s(dir_.file("panels.safetensors"), dir_.file("rows_again.safetensors"), as_rows);
  EXPECT_EQ(relaid.quantized, 0u);
  EXPECT_EQ(relaid.panels, 2u);
  const SafetensorsFile rows = SafetensorsFile::open(dir_.file("rows.safetensors"));
  const SafetensorsFile panels = SafetensorsFile::open(dir_.file("panels.safetensors"));
  const SafetensorsFile rows_again = SafetensorsFile::open(dir_.file("rows_again.safetensors"));
  const std::vector<Weight8BitS> in_rows = find_8bit_s_weights(rows);
  ASSERT_EQ(in_rows.size(), 3u);
  for (const Weight8BitS& w : in_rows) {
    EXPECT_EQ(w.layout(), Layout8BitS::Rows) << w.values->name;
    const TensorInfo& p = panels.at(w.values->name);
    EXPECT_EQ(p.dtype, w.rows % 64 == 0 ? DType::U8 : DType::I8) << w.values->name;
    const std::vector<int8_t> q = w.read_rows(rows);
    EXPECT_EQ(Weight8BitS({&p, &panels.at(w.scale->name), w.rows, w.cols}).read_rows(panels), q) << w.values->name;
    const TensorInfo& r = rows_again.at(w.values->name);
    ASSERT_EQ(r.dtype, DType::I8);
    EXPECT_EQ(std::memcmp(rows_again.data(r).data(), q.data(), q.size()), 0) << w.values->name;
  }
}

// The rule reads the same in both Stable Diffusion layouts (the original single
// file and diffusers'): it goes by the tensor's shape and its layer's own name.
TEST(Convert, KeepsInputAndOutputLayersAndLookupTablesInFloatInEveryLayout) {
  const std::map<std::string, std::vector<int64_t>> shapes = {
      // output layers: 8 or more times fewer rows than input channels
      {"model.diffusion_model.out.2.weight", {4, 128, 3, 3}},
      {"conv_out.weight", {4, 128, 3, 3}},
      {"first_stage_model.decoder.conv_out.weight", {3, 256, 3, 3}},
      {"first_stage_model.encoder.conv_out.weight", {8, 256, 3, 3}},
      {"final_layer.linear.weight", {32, 1152}},
      // lookup tables
      {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", {1000, 64}},
      {"text_model.embeddings.position_embedding.weight", {77, 64}},
      {"cond_stage_model.model.token_embedding.weight", {1000, 64}},
      // input layers: more than 8 times more rows than input channels
      {"model.diffusion_model.input_blocks.0.0.weight", {128, 4, 3, 3}},
      {"conv_in.weight", {128, 4, 3, 3}},
      {"first_stage_model.decoder.conv_in.weight", {256, 4, 3, 3}},
      {"x_embedder.proj.weight", {1152, 4, 2, 2}},
      // matrices: the time embedding in both layouts, hidden layers (GEGLU widens 8-fold)
      {"model.diffusion_model.time_embed.0.weight", {256, 64}},
      {"time_embedding.linear_1.weight", {256, 64}},
      {"down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", {512, 64}},
      {"up_blocks.1.resnets.0.conv1.weight", {64, 128, 3, 3}},
      {"down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight", {64, 256}},
      {"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", {192, 64}},
  };
  test::TempDir dir;
  std::vector<std::vector<float>> values;
  std::vector<TensorSource> sources;
  for (const auto& [name, shape] : shapes) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    values.push_back(test::random_floats(static_cast<size_t>(numel), static_cast<uint32_t>(values.size() + 1)));
    sources.push_back(TensorSource::from_bytes(name, DType::F32, shape, test::bytes_of(values.back())));
  }
  write_safetensors(dir.file("in.safetensors"), std::move(sources), {});
  const ConvertReport report = convert_to_8bit_s(dir.file("in.safetensors"), dir.file("out.safetensors"), {});
  std::map<std::string, ConvertedTensor> by_name;
  for (const ConvertedTensor& t : report.tensors) by_name.emplace(t.name, t);

  for (const char* name : {"model.diffusion_model.out.2.weight", "conv_out.weight"}) {
    EXPECT_EQ(by_name.at(name).reason, "output layer: 4 rows from 128 input channels") << name;
  }
  for (const char* name : {"first_stage_model.decoder.conv_out.weight", "first_stage_model.encoder.conv_out.weight",
                           "final_layer.linear.weight"}) {
    EXPECT_EQ(by_name.at(name).action, TensorAction::Kept) << name;
    EXPECT_THAT(by_name.at(name).reason, HasSubstr("output layer")) << name;
  }
  for (const char* name : {"model.diffusion_model.input_blocks.0.0.weight", "conv_in.weight"}) {
    EXPECT_EQ(by_name.at(name).reason, "input layer: 128 rows from 4 input channels") << name;
  }
  EXPECT_THAT(by_name.at("first_stage_model.decoder.conv_in.weight").reason, HasSubstr("input layer"));
  EXPECT_THAT(by_name.at("x_embedder.proj.weight").reason, HasSubstr("input layer"));
  for (const char* name : {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                           "text_model.embeddings.position_embedding.weight", "cond_stage_model.model.token_embedding.weight"}) {
    EXPECT_EQ(by_name.at(name).reason, "embedding table") << name;
  }
  size_t matrices = 0;
  for (const auto& [name, shape] : shapes) {
    if (by_name.at(name).action == TensorAction::Quantized) ++matrices;
  }
  EXPECT_EQ(matrices, 6u);  // the six listed last, among them both time embeddings
  EXPECT_EQ(by_name.at("time_embedding.linear_1.weight").action, TensorAction::Quantized);
  EXPECT_EQ(by_name.at("model.diffusion_model.time_embed.0.weight").action, TensorAction::Quantized);
}

TEST(Convert, RefusesNonFiniteWeightsAndWritesNothing) {
  test::TempDir dir;
  std::vector<float> w = test::random_floats(64 * 64, 3);
  w[70] = INFINITY;
  std::vector<TensorSource> t;
  t.push_back(TensorSource::from_bytes("lin.weight", DType::F32, {64, 64}, test::bytes_of(w)));
  write_safetensors(dir.file("in.safetensors"), std::move(t), {});
  EXPECT_THAT([&] { convert_to_8bit_s(dir.file("in.safetensors"), dir.file("out.safetensors"), {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("tensor 'lin.weight' holds NaN or infinity (row 1)")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out.safetensors")));
  EXPECT_EQ(dir.entries().size(), 1u);
}

// A diffusers folder converts component by component into a new folder; the
// other files are copied as they are, and nothing is left behind on an error.
TEST(Convert, ConvertsADiffusersFolderIntoANewOne) {
  test::TempDir dir;
  const std::filesystem::path in = dir.path() / "model", out = dir.path() / "model-8bit-s";
  std::filesystem::create_directories(in / "unet");
  std::filesystem::create_directories(in / "tokenizer");
  test::write_random_safetensors((in / "unet" / "diffusion_pytorch_model.safetensors").string(),
                                 {{"mid.proj.weight", {128, 64}}, {"mid.norm.weight", {64}}}, {});
  const std::string index = R"({"_class_name": "StableDiffusionXLPipeline"})", vocab = "a b c\n";
  test::write_text((in / "model_index.json").string(), index);
  test::write_text((in / "tokenizer" / "merges.txt").string(), vocab);

  const ConvertReport report = convert_folder_to_8bit_s(in.string(), out.string(), {});
  EXPECT_EQ(report.quantized, 1u);
  EXPECT_EQ(report.worst_tensor, "unet/mid.proj.weight");
  const SafetensorsFile converted = SafetensorsFile::open((out / "unet" / "diffusion_pytorch_model.safetensors").string());
  EXPECT_EQ(converted.find("mid.proj.weight")->dtype, DType::U8);
  EXPECT_EQ(converted.find("mid.norm.weight")->dtype, DType::F32);
  EXPECT_EQ(test::read_text((out / "model_index.json").string()), index);
  EXPECT_EQ(test::read_text((out / "tokenizer" / "merges.txt").string()), vocab);

  EXPECT_THAT([&] { convert_folder_to_8bit_s(in.string(), out.string(), {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("model-8bit-s: already exists")));
  EXPECT_THAT([&] { convert_folder_to_8bit_s((in / "unet").string(), (dir.path() / "x").string(), {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("unet: not a diffusers folder (no model_index.json)")));
  // A broken component: an error naming it, and no folder, not even a partial one.
  std::filesystem::create_directories(in / "vae");
  test::write_text((in / "vae" / "diffusion_pytorch_model.safetensors").string(), "not safetensors");
  EXPECT_THROW(convert_folder_to_8bit_s(in.string(), (dir.path() / "broken").string(), {}), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "broken"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / ".broken.partial"));
}

TEST(Convert, RefusesAConfigThatIsNotAJsonObject) {
  test::TempDir dir;
  write_safetensors(dir.file("in.safetensors"), {}, {});
  ConvertOptions o;
  o.config_json = "[1, 2";
  EXPECT_THAT([&] { convert_to_8bit_s(dir.file("in.safetensors"), dir.file("out.safetensors"), o); },
              ::testing::ThrowsMessage<Error>(HasSubstr("the config to record is not a JSON object")));
}

}  // namespace
}  // namespace tiledraw
