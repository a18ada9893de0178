// The CLIP text encoder: both checkpoint layouts, the causal mask, the layer
// choice, the pooled output, and malformed files. Its numbers against PyTorch
// are checked by tests/reference/test_encoders.py.
#include <cmath>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "models/clip_text.h"
#include "runtime/executor.h"
#include "test_util.h"
#include "tiledraw/error.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

constexpr int64_t kWidth = 128, kLayers = 2, kMlp = 256, kVocabulary = 50, kPositions = 77, kProjection = 32;

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// A tiny text model in Hugging Face's names (CLIPTextModelWithProjection), random.
std::vector<Tensor> hf_tensors() {
  std::vector<Tensor> t;
  uint32_t seed = 1;
  const auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0.0f) {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    std::vector<float> v = test::random_floats(static_cast<size_t>(n), seed++, scale);
    for (float& x : v) x += offset;
    t.push_back({name, std::move(shape), std::move(v)});
  };
  const auto linear = [&](const std::string& name, int64_t rows, int64_t cols) {
    add(name + ".weight", {rows, cols}, 1.0f / std::sqrt(static_cast<float>(cols)));
    add(name + ".bias", {rows}, 0.1f);
  };
  const auto norm = [&](const std::string& name) {
    add(name + ".weight", {kWidth}, 0.1f, 1.0f);
    add(name + ".bias", {kWidth}, 0.1f);
  };
  add("text_model.embeddings.token_embedding.weight", {kVocabulary, kWidth}, 1.0f);
  add("text_model.embeddings.position_embedding.weight", {kPositions, kWidth}, 0.5f);
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "text_model.encoder.layers." + std::to_string(l) + ".";
    norm(p + "layer_norm1");
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) linear(p + "self_attn." + proj, kWidth, kWidth);
    norm(p + "layer_norm2");
    linear(p + "mlp.fc1", kMlp, kWidth);
    linear(p + "mlp.fc2", kWidth, kMlp);
  }
  norm("text_model.final_layer_norm");
  add("text_projection.weight", {kProjection, kWidth}, 0.1f);
  return t;
}

const Tensor& named(const std::vector<Tensor>& tensors, const std::string& name) {
  return *std::find_if(tensors.begin(), tensors.end(), [&](const Tensor& t) { return t.name == name; });
}

// The same weights in OpenCLIP's names: q, k, v stacked, the projection turned round.
std::vector<Tensor> openclip_tensors(const std::vector<Tensor>& hf) {
  const auto same = [&](const std::string& to, const std::string& from) { return Tensor{to, named(hf, from).shape, named(hf, from).values}; };
  std::vector<Tensor> t = {same("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
                           same("positional_embedding", "text_model.embeddings.position_embedding.weight"),
                           same("ln_final.weight", "text_model.final_layer_norm.weight"),
                           same("ln_final.bias", "text_model.final_layer_norm.bias")};
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "text_model.encoder.layers." + std::to_string(l) + ".", q = "transformer.resblocks." + std::to_string(l) + ".";
    for (const std::string part : {"weight", "bias"}) {
      Tensor stacked{q + "attn.in_proj_" + part, {}, {}};
      for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
        const Tensor& one = named(hf, p + "self_attn." + proj + "." + part);
        stacked.values.insert(stacked.values.end(), one.values.begin(), one.values.end());
      }
      stacked.shape = part == "weight" ? std::vector<int64_t>{3 * kWidth, kWidth} : std::vector<int64_t>{3 * kWidth};
      t.push_back(std::move(stacked));
      for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
               {"layer_norm1", "ln_1"}, {"layer_norm2", "ln_2"}, {"self_attn.out_proj", "attn.out_proj"},
               {"mlp.fc1", "mlp.c_fc"}, {"mlp.fc2", "mlp.c_proj"}}) {
        t.push_back(same(q + to + "." + part, p + from + "." + part));
      }
    }
  }
  const Tensor& projection = named(hf, "text_projection.weight");
  Tensor turned{"text_projection", {kWidth, kProjection}, std::vector<float>(projection.values.size())};
  for (int64_t j = 0; j < kProjection; ++j) {
    for (int64_t k = 0; k < kWidth; ++k) turned.values[static_cast<size_t>(k * kProjection + j)] = projection.values[static_cast<size_t>(j * kWidth + k)];
  }
  t.push_back(std::move(turned));
  return t;
}

void write(const std::string& path, const std::vector<Tensor>& tensors, const std::string& prefix,
           const std::string& skip = "") {
  std::vector<TensorSource> sources;
  for (const Tensor& t : tensors) {
    if (t.name == skip) continue;
    sources.push_back(TensorSource::from_bytes(prefix + t.name, DType::F32, t.shape, test::bytes_of(t.values)));
  }
  write_safetensors(path, std::move(sources), {});
}

// BOS, words, EOS, then padding (EOS as SD 1.x pads, or 0 as SD 2.x); the
// largest ids are BOS 48 and EOS 49.
std::vector<float> token_ids(const std::vector<int64_t>& lengths, bool pad_with_eos) {
  std::vector<float> ids;
  for (const int64_t length : lengths) {
    for (int64_t i = 0; i < kPositions; ++i) {
      const bool padding = i >= length;
      ids.push_back(i == 0 ? 48.0f : i == length - 1 ? 49.0f : padding ? (pad_with_eos ? 49.0f : 0.0f) : static_cast<float>(1 + (i * 7) % 40));
    }
  }
  return ids;
}

std::vector<float> encode(const models::ClipTextEncoder& encoder, const std::vector<float>& ids, int64_t layers) {
  const auto accel = make_accelerator("ref");
  const int64_t batch = static_cast<int64_t>(ids.size()) / kPositions;
  const auto built = encoder.build(batch, {layers});
  EXPECT_EQ(built->graph.values()[static_cast<size_t>(built->hidden_states)].shape, (std::vector<int64_t>{batch, kPositions, kWidth}));
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  exec.run({ids.data()});
  const float* out = exec.data(built->hidden_states);
  return {out, out + batch * kPositions * kWidth};
}

class ClipText : public ::testing::Test {
 protected:
  void SetUp() override {
    write(dir_.file("sd1.safetensors"), hf_, "cond_stage_model.transformer.");
    write(dir_.file("sd2.safetensors"), openclip_tensors(hf_), "cond_stage_model.model.");
  }
  test::TempDir dir_;
  std::vector<Tensor> hf_ = hf_tensors();
  std::unique_ptr<Accelerator> accel_ = make_accelerator("ref");
};

TEST_F(ClipText, BothLayoutsReadAsTheSameModel) {
  const SafetensorsFile sd1 = SafetensorsFile::open(dir_.file("sd1.safetensors"));
  const SafetensorsFile sd2 = SafetensorsFile::open(dir_.file("sd2.safetensors"));
  // Without a config, Hugging Face's names mean OpenAI's QuickGELU; this one says GELU, as OpenCLIP's.
  const models::WeightView hf(sd1, "cond_stage_model.transformer.", {}, {{"hidden_act", "gelu"}});
  const models::WeightView openclip(sd2, "cond_stage_model.model.", {}, nlohmann::json::object());
  EXPECT_TRUE(models::holds_clip_text(hf));
  EXPECT_TRUE(models::holds_clip_text(openclip));
  EXPECT_FALSE(models::holds_clip_text(models::WeightView(sd1, "cond_stage_model.model.", {}, {})));
  const models::ClipTextEncoder a(hf, *accel_, Precision::Float), b(openclip, *accel_, Precision::Float);
  for (const models::ClipTextEncoder* e : {&a, &b}) {
    EXPECT_EQ(e->config().width, kWidth);
    EXPECT_EQ(e->config().layers, kLayers);
    EXPECT_EQ(e->config().heads, 2) << "heads of 64";
    EXPECT_EQ(e->config().positions, kPositions);
    EXPECT_EQ(e->config().projection, kProjection);
    EXPECT_EQ(e->config().activation, kernels::Unary::GeluErf);
  }
  const std::vector<float> ids = token_ids({5, 77}, false);
  for (int64_t layers : {int64_t{1}, kLayers}) EXPECT_EQ(encode(a, ids, layers), encode(b, ids, layers)) << layers << " layers";
  const models::ClipTextEncoder openai(models::WeightView(sd1, "cond_stage_model.transformer.", {}, {}), *accel_, Precision::Float);
  EXPECT_EQ(openai.config().activation, kernels::Unary::QuickGelu);
  EXPECT_NE(encode(openai, ids, kLayers), encode(a, ids, kLayers));
}

TEST_F(ClipText, ALaterTokenDoesNotChangeEarlierPositions) {
  const SafetensorsFile file = SafetensorsFile::open(dir_.file("sd1.safetensors"));
  const models::ClipTextEncoder encoder(models::WeightView(file, "cond_stage_model.transformer.", {}, {}), *accel_, Precision::Float);
  std::vector<float> ids = token_ids({30}, true);
  const std::vector<float> before = encode(encoder, ids, kLayers);
  ids[10] = 3.0f;
  const std::vector<float> after = encode(encoder, ids, kLayers);
  const auto position = [&](const std::vector<float>& h, int64_t p) {
    return std::vector<float>(h.begin() + p * kWidth, h.begin() + (p + 1) * kWidth);
  };
  for (int64_t p = 0; p < 10; ++p) EXPECT_EQ(position(before, p), position(after, p)) << "position " << p;
  for (int64_t p = 10; p < kPositions; ++p) EXPECT_NE(position(before, p), position(after, p)) << "position " << p;
}

TEST_F(ClipText, LayersChooseTheDepthWithinTheModel) {
  const SafetensorsFile file = SafetensorsFile::open(dir_.file("sd2.safetensors"));
  const models::ClipTextEncoder encoder(models::WeightView(file, "cond_stage_model.model.", {}, {}), *accel_, Precision::Float);
  const std::vector<float> ids = token_ids({12}, false);
  EXPECT_NE(encode(encoder, ids, 1), encode(encoder, ids, 2));
  for (int64_t layers : {int64_t{0}, kLayers + 1}) {
    EXPECT_THAT([&] { encoder.build(1, {layers}); },
                ThrowsMessage<Error>(HasSubstr("cannot stop after layer " + std::to_string(layers) + " of a model of 2 layers")));
  }
  std::vector<float> outside = ids;
  outside[3] = static_cast<float>(kVocabulary);
  EXPECT_THROW(encode(encoder, outside, 1), Error) << "an id past the vocabulary";
}

// SDXL's way: the penultimate layer as it is, and from the same run the
// full-depth, final-normed states the pooled vector is taken from.
TEST_F(ClipText, PenultimateWithoutFinalNormAndPoolingSourceInOneRun) {
  const SafetensorsFile file = SafetensorsFile::open(dir_.file("sd2.safetensors"));
  const models::ClipTextEncoder encoder(models::WeightView(file, "cond_stage_model.model.", {}, {}), *accel_, Precision::Float);
  const std::vector<float> ids = token_ids({7, 30}, false);
  const auto built = encoder.build(2, {kLayers - 1, false, true});
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel_, cache);
  exec.run({ids.data()});
  const float* raw = exec.data(built->hidden_states);
  const float* source = exec.data(built->pooling_source);
  // The final layer norm of the raw states, computed here, is what the normed graph gives.
  const std::vector<float> normed = encode(encoder, ids, kLayers - 1);
  const std::vector<float>& gamma = named(hf_, "text_model.final_layer_norm.weight").values;
  const std::vector<float>& beta = named(hf_, "text_model.final_layer_norm.bias").values;
  double worst = 0.0;
  for (int64_t token = 0; token < 2 * kPositions; ++token) {
    const float* x = raw + token * kWidth;
    double mean = 0.0, variance = 0.0;
    for (int64_t i = 0; i < kWidth; ++i) mean += x[i];
    mean /= kWidth;
    for (int64_t i = 0; i < kWidth; ++i) variance += (x[i] - mean) * (x[i] - mean);
    variance /= kWidth;
    for (int64_t i = 0; i < kWidth; ++i) {
      const double expected = (x[i] - mean) / std::sqrt(variance + 1e-5) * gamma[static_cast<size_t>(i)] + beta[static_cast<size_t>(i)];
      worst = std::max(worst, std::abs(expected - normed[static_cast<size_t>(token * kWidth + i)]));
    }
  }
  EXPECT_LT(worst, 1e-4) << "the raw penultimate states are the normed ones before the final layer norm";
  EXPECT_EQ(std::vector<float>(source, source + 2 * kPositions * kWidth), encode(encoder, ids, kLayers))
      << "the pooling source is the full-depth, final-normed run";
}

TEST_F(ClipText, PooledIsTheProjectedHiddenStateAtTheFirstLargestId) {
  const SafetensorsFile file = SafetensorsFile::open(dir_.file("sd1.safetensors"));
  const models::ClipTextEncoder encoder(models::WeightView(file, "cond_stage_model.transformer.", {}, {}), *accel_, Precision::Float);
  const std::vector<int64_t> lengths = {5, 40, 77};  // SD 1.x pads with EOS: the first one is the prompt's end
  const std::vector<float> ids = token_ids(lengths, true);
  const std::vector<float> hidden = encode(encoder, ids, kLayers);
  const std::vector<float> pooled = encoder.pooled(ids.data(), hidden.data(), 3);
  ASSERT_EQ(pooled.size(), static_cast<size_t>(3 * kProjection));
  const std::vector<float>& projection = named(hf_, "text_projection.weight").values;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const float* h = &hidden[static_cast<size_t>((static_cast<int64_t>(b) * kPositions + lengths[b] - 1) * kWidth)];
    for (int64_t j = 0; j < kProjection; ++j) {
      double expected = 0.0;
      for (int64_t k = 0; k < kWidth; ++k) expected += static_cast<double>(projection[static_cast<size_t>(j * kWidth + k)]) * h[k];
      EXPECT_NEAR(pooled[b * kProjection + static_cast<size_t>(j)], expected, 1e-5) << "row " << b << ", column " << j;
    }
  }
  // Without a projection the pooled output is the hidden state itself.
  write(dir_.file("plain.safetensors"), hf_, "", "text_projection.weight");
  const SafetensorsFile plain_file = SafetensorsFile::open(dir_.file("plain.safetensors"));
  const models::ClipTextEncoder plain(plain_file, *accel_, Precision::Float);
  EXPECT_EQ(plain.config().projection, 0);
  const std::vector<float> unprojected = plain.pooled(ids.data(), hidden.data(), 3);
  EXPECT_EQ(std::vector<float>(unprojected.begin() + kWidth, unprojected.begin() + 2 * kWidth),
            std::vector<float>(hidden.begin() + (kPositions + 39) * kWidth, hidden.begin() + (kPositions + 40) * kWidth));
}

TEST_F(ClipText, MalformedFilesAreErrorsNamingFileAndTensor) {
  const auto load = [&](const std::vector<Tensor>& tensors, const nlohmann::json& config = nlohmann::json::object(),
                        const std::string& skip = "") {
    write(dir_.file("bad.safetensors"), tensors, "", skip);
    const SafetensorsFile file = SafetensorsFile::open(dir_.file("bad.safetensors"));
    models::ClipTextEncoder encoder(models::WeightView(file, "", {}, config), *accel_, Precision::AsStored);
  };
  const std::string bad = dir_.file("bad.safetensors");
  EXPECT_THAT([&] { load(hf_, {}, "text_model.encoder.layers.1.layer_norm2.bias"); },
              ThrowsMessage<Error>(HasSubstr(bad + ": not a CLIP text encoder: no tensor 'text_model.encoder.layers.1.layer_norm2.bias'")));
  EXPECT_THAT([&] { load(hf_, {}, "text_model.embeddings.token_embedding.weight"); },
              ThrowsMessage<Error>(HasSubstr("no tensor 'text_model.embeddings.token_embedding.weight' (expected Hugging Face's")));
  std::vector<Tensor> wrong = hf_;
  for (Tensor& t : wrong) {
    if (t.name == "text_model.encoder.layers.1.self_attn.out_proj.weight") {
      t.shape = {kWidth, 2 * kWidth};
      t.values.resize(static_cast<size_t>(2 * kWidth * kWidth));
    }
  }
  EXPECT_THAT([&] { load(wrong); }, ThrowsMessage<Error>(HasSubstr(
                                        bad + ": 'text_model.encoder.layers.1.self_attn.out_proj.weight' is [128, 256], expected [128, 128]")));
  wrong = hf_;
  for (Tensor& t : wrong) {
    if (t.name == "text_model.embeddings.position_embedding.weight") t.shape = {kPositions * kWidth};
  }
  EXPECT_THAT([&] { load(wrong); }, ThrowsMessage<Error>(HasSubstr(
                                        "'text_model.embeddings.position_embedding.weight' has shape [9856], expected [rows, 128]")));
  wrong = hf_;
  for (Tensor& t : wrong) {
    if (t.name == "text_model.final_layer_norm.bias") {
      t.values.resize(kWidth - 1);
      t.shape = {kWidth - 1};
    }
  }
  EXPECT_THAT([&] { load(wrong); }, ThrowsMessage<Error>(HasSubstr("'text_model.final_layer_norm.bias' has 127 values, expected 128")));
  EXPECT_THAT([&] { load(hf_, {{"num_hidden_layers", 3}}); },
              ThrowsMessage<Error>(HasSubstr(bad + ": num_hidden_layers is 3 but 2 layers are stored")));
  EXPECT_THAT([&] { load(hf_, {{"hidden_size", 64}}); }, ThrowsMessage<Error>(HasSubstr("the config disagrees with the tensor shapes")));
  EXPECT_THAT([&] { load(hf_, {{"hidden_act", "relu"}}); }, ThrowsMessage<Error>(HasSubstr("hidden_act 'relu' is not one of")));
  EXPECT_THAT([&] { load(hf_, {{"num_attention_heads", 3}}); },
              ThrowsMessage<Error>(HasSubstr("width 128 does not split into 3 heads")));
  wrong = hf_;
  for (Tensor& t : wrong) {
    if (t.name == "text_projection.weight") t.shape = {kWidth, kProjection};
  }
  EXPECT_THAT([&] { load(wrong); }, ThrowsMessage<Error>(HasSubstr("'text_projection.weight' has shape [128, 32], expected [projection, 128]")));
  // A config with fewer layers than stored uses only those (diffusers' SD 2.x text_encoder/ keeps 23 of 24).
  write(bad, hf_, "");
  const SafetensorsFile file = SafetensorsFile::open(bad);
  EXPECT_EQ(models::ClipTextEncoder(models::WeightView(file, "", {}, {{"num_hidden_layers", 1}}), *accel_).config().layers, 1);
}

}  // namespace
}  // namespace tiledraw
