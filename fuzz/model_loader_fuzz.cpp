// The model loaders (DiT in both layouts, the VAE decoder, the MLP classifier):
// their name mapping and config inference on files whose shapes, dtypes and
// config disagree. Each input starts from a valid tiny model made here, which
// its bytes then mutate (drop, rename, reshape, retype, quantize, poison
// tensors; edit the "config" JSON and other metadata). The loader either
// refuses the file with tiledraw::Error or builds a model, which is then built
// as a graph at a small size (never the size the config claims) and run once,
// so that a table or norm vector smaller than the graph reads shows up in ASan.
//
// Input layout (fuzz/make_corpus.py writes seeds in it): model kind, base
// dtype, precision, then mutations of an opcode byte and its operands until
// the input ends.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>

#include "fuzz_util.h"
#include "models/dit.h"
#include "models/mlp_classifier.h"
#include "models/vae.h"
#include "runtime/executor.h"
#include "tiledraw/accel.h"
#include "tiledraw/error.h"
#include "tiledraw/pipeline.h"
#include "tiledraw/quant8s.h"

namespace {

using tiledraw::DType;
using tiledraw::Precision;
using json = nlohmann::json;

enum class Kind { DitOriginal, DitDiffusers, Vae, Mlp };
constexpr Kind kKinds[] = {Kind::DitOriginal, Kind::DitDiffusers, Kind::Vae, Kind::Mlp};
constexpr Precision kPrecisions[] = {Precision::AsStored, Precision::Float, Precision::Int8};

// A file is refused or truncated past these: every input stays small and fast.
constexpr uint64_t kMaxTensorBytes = 1 << 20;
constexpr uint64_t kMaxFileBytes = 4 << 20;
constexpr size_t kMaxMutations = 32;

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  bool poisoned = false;  // all bytes 0xFF: NaN for floats, -1 for integers
};

// The tiny models: width 16 (DiT) or 8 (VAE) channels, two blocks, and a
// config that agrees with the shapes.
constexpr int64_t kWidth = 16, kPatch = 2, kLatent = 4, kFrequencies = 32, kClasses = 10, kVaeWidth = 8;

struct ModelFile {
  std::vector<TensorSpec> tensors;
  json config = json::object();
  bool has_config = true;
  std::map<std::string, std::string> metadata;

  void add(const std::string& name, std::vector<int64_t> shape) { tensors.push_back({name, DType::F32, std::move(shape)}); }
  void linear(const std::string& prefix, int64_t out, int64_t in) {
    add(prefix + ".weight", {out, in});
    add(prefix + ".bias", {out});
  }
  void conv(const std::string& prefix, int64_t out, int64_t in, int64_t kernel) {
    add(prefix + ".weight", {out, in, kernel, kernel});
    add(prefix + ".bias", {out});
  }
  void norm(const std::string& prefix, int64_t channels) {
    add(prefix + ".weight", {channels});
    add(prefix + ".bias", {channels});
  }
  const TensorSpec* find(const std::string& name) const {
    const auto it = std::find_if(tensors.begin(), tensors.end(), [&](const TensorSpec& t) { return t.name == name; });
    return it == tensors.end() ? nullptr : &*it;
  }
};

ModelFile dit(bool diffusers) {
  ModelFile m;
  const int64_t outputs = kPatch * kPatch * 2 * kLatent;  // learned sigma
  if (!diffusers) {
    m.add("pos_embed", {1, 16, kWidth});
    m.conv("x_embedder.proj", kWidth, kLatent, kPatch);
    m.linear("t_embedder.mlp.0", kWidth, kFrequencies);
    m.linear("t_embedder.mlp.2", kWidth, kWidth);
    m.add("y_embedder.embedding_table.weight", {kClasses + 1, kWidth});
    for (int b = 0; b < 2; ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      m.linear(p + "attn.qkv", 3 * kWidth, kWidth);
      m.linear(p + "attn.proj", kWidth, kWidth);
      m.linear(p + "mlp.fc1", 4 * kWidth, kWidth);
      m.linear(p + "mlp.fc2", kWidth, 4 * kWidth);
      m.linear(p + "adaLN_modulation.1", 6 * kWidth, kWidth);
    }
    m.linear("final_layer.linear", outputs, kWidth);
    m.linear("final_layer.adaLN_modulation.1", 2 * kWidth, kWidth);
    m.config = {{"input_size", 8}, {"patch_size", kPatch}, {"in_channels", kLatent}, {"hidden_size", kWidth},
                {"depth", 2},      {"num_heads", 2},       {"num_classes", kClasses}, {"learn_sigma", true}};
    return m;
  }
  m.conv("pos_embed.proj", kWidth, kLatent, kPatch);
  for (int b = 0; b < 2; ++b) {
    const std::string p = "transformer_blocks." + std::to_string(b) + ".";
    m.linear(p + "norm1.emb.timestep_embedder.linear_1", kWidth, kFrequencies);
    m.linear(p + "norm1.emb.timestep_embedder.linear_2", kWidth, kWidth);
    m.add(p + "norm1.emb.class_embedder.embedding_table.weight", {kClasses + 1, kWidth});
    m.linear(p + "norm1.linear", 6 * kWidth, kWidth);
    for (const char* qkv : {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"}) m.linear(p + qkv, kWidth, kWidth);
    m.linear(p + "ff.net.0.proj", 4 * kWidth, kWidth);
    m.linear(p + "ff.net.2", kWidth, 4 * kWidth);
  }
  m.linear("proj_out_1", 2 * kWidth, kWidth);
  m.linear("proj_out_2", outputs, kWidth);
  m.config = {{"sample_size", 8},         {"patch_size", kPatch},         {"in_channels", kLatent},
              {"num_layers", 2},          {"num_attention_heads", 2},     {"attention_head_dim", kWidth / 2},
              {"num_embeds_ada_norm", kClasses}, {"out_channels", 2 * kLatent}, {"norm_eps", 1e-5}};
  return m;
}

ModelFile vae() {
  ModelFile m;
  const int64_t c = kVaeWidth;
  const auto resnet = [&](const std::string& p) {
    m.norm(p + "norm1", c);
    m.conv(p + "conv1", c, c, 3);
    m.norm(p + "norm2", c);
    m.conv(p + "conv2", c, c, 3);
  };
  m.conv("post_quant_conv", kLatent, kLatent, 1);
  m.conv("decoder.conv_in", c, kLatent, 3);
  resnet("decoder.mid_block.resnets.0.");
  resnet("decoder.mid_block.resnets.1.");
  m.norm("decoder.mid_block.attentions.0.group_norm", c);
  for (const char* part : {"to_q", "to_k", "to_v", "to_out.0"}) m.linear(std::string("decoder.mid_block.attentions.0.") + part, c, c);
  for (int b = 0; b < 2; ++b) {
    const std::string p = "decoder.up_blocks." + std::to_string(b) + ".";
    resnet(p + "resnets.0.");
    resnet(p + "resnets.1.");
    if (b == 0) m.conv(p + "upsamplers.0.conv", c, c, 3);
  }
  m.norm("decoder.conv_norm_out", c);
  m.conv("decoder.conv_out", 3, c, 3);
  m.config = {{"norm_num_groups", 4}, {"scaling_factor", 0.18215}, {"latent_channels", kLatent},
              {"out_channels", 3},    {"block_out_channels", {c, c}}, {"layers_per_block", 1}};
  return m;
}

ModelFile mlp() {
  ModelFile m;
  m.linear("fc1", 8, 16);
  m.linear("fc2", kClasses, 8);
  m.has_config = false;
  m.metadata = {{"input_shape", "[1, 4, 4]"}, {"activation", "gelu_tanh"},
                {"class_names", R"(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])"}};
  return m;
}

ModelFile base_model(Kind kind) {
  switch (kind) {
    case Kind::DitOriginal: return dit(false);
    case Kind::DitDiffusers: return dit(true);
    case Kind::Vae: return vae();
    case Kind::Mlp: return mlp();
  }
  return {};
}

// Every tensor name of every base model: renames draw from these, so a file
// can gain a name of the other layout or of another block.
const std::vector<std::string>& known_names() {
  static const std::vector<std::string> names = [] {
    std::set<std::string> all;
    for (Kind kind : kKinds) {
      for (const TensorSpec& t : base_model(kind).tensors) all.insert(t.name);
    }
    for (const char* extra : {"pos_embed", "blocks.2.mlp.fc1.weight", "transformer_blocks.2.ff.net.0.proj.weight",
                              "decoder.up_blocks.2.resnets.0.conv2.weight", "decoder.up_blocks.0.resnets.2.conv1.weight",
                              "decoder.mid_block.attentions.0.query.weight", "decoder.up_blocks.0.resnets.0.conv_shortcut.weight",
                              "fc3.weight", "fc3.bias"}) {
      all.insert(extra);
    }
    return std::vector<std::string>(all.begin(), all.end());
  }();
  return names;
}

const json kConfigValues[] = {0, -1, 1, 2, 3, 4, 5, 8, 16, 17, 32, 64, int64_t{1} << 40, INT64_MAX, INT64_MIN,
                              UINT64_MAX, 0.5, 1e308, -0.0, "8", nullptr, true, false, json::array(), json::object(),
                              json::array({8, 8}), json::array({4}), json::array({8, 16, 32})};
constexpr const char* kConfigKeys[] = {"input_size", "sample_size", "patch_size", "in_channels", "hidden_size",
                                       "depth", "num_layers", "num_heads", "num_attention_heads", "num_classes",
                                       "learn_sigma", "norm_eps", "norm_num_groups", "scaling_factor",
                                       "block_out_channels", "layers_per_block", "latent_channels", "out_channels"};
constexpr const char* kMetadataKeys[] = {"input_shape", "class_names", "activation", "config", "format"};
constexpr const char* kMetadataValues[] = {
    "[1, 4, 4]", "[1, 16]", "[0, 4, 4]", "[-1, 4, 4]", "[1, 4, 4.5]", "[4294967296, 4294967296, 4294967296]",
    "[9223372036854775807, 2, 1]", "[]", "{}", "null", "not json", "gelu_tanh", "gelu", "", "[\"a\", \"b\"]",
    "[\"0\", 1]", R"(["0", "1", "2", "3", "4", "5", "6", "7", "8"])", "[[[[[[[[[[]]]]]]]]]]", "8bit-s"};
constexpr int64_t kDims[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 15, 16, 17, 24, 32, 48, 64};
constexpr int64_t kHugeDims[] = {int64_t{1} << 31, (int64_t{1} << 32) + 1, int64_t{1} << 40, int64_t{1} << 62, INT64_MAX};
constexpr DType kDtypes[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I8, DType::U8, DType::I32, DType::BOOL};

uint64_t tensor_bytes(const TensorSpec& t) { return fuzz::byte_size(t.dtype, t.shape); }

// As the converter stores a model: matrices (rank >= 2 ".weight") as I8 with a
// "<name>_scale" F32 of one scale per row.
void quantize(ModelFile& m, size_t index) {
  TensorSpec& t = m.tensors[index];
  if (t.shape.empty()) return;
  t.dtype = DType::I8;
  const std::string scale = tiledraw::scale_tensor_name(t.name);
  const int64_t rows = t.shape[0];
  if (!m.find(scale)) m.tensors.push_back({scale, DType::F32, {rows}});
}

enum class Op {
  Drop, Rename, RenameSuffix, RenameBlock, SetDim, HugeDim, AddDim, DropDim, Scalar, SetDtype, Quantize, Poison,
  SetConfig, EraseConfig, RawConfig, SetMetadata, CopyBlock, Count
};

void mutate(ModelFile& m, fuzz::ByteReader& in) {
  const auto op = static_cast<Op>(in.below(static_cast<size_t>(Op::Count)));
  if (m.tensors.empty()) return;
  const size_t index = in.u16() % m.tensors.size();
  TensorSpec& t = m.tensors[index];
  switch (op) {
    case Op::Drop:
      m.tensors.erase(m.tensors.begin() + static_cast<ptrdiff_t>(index));
      break;
    case Op::Rename: {
      const std::string& name = known_names()[in.u16() % known_names().size()];
      std::erase_if(m.tensors, [&](const TensorSpec& other) { return other.name == name; });
      if (index < m.tensors.size()) m.tensors[index].name = name;
      break;
    }
    case Op::RenameSuffix: {  // ".weight" <-> ".bias" <-> ".weight_scale" ...
      constexpr const char* kSuffixes[] = {".weight", ".bias", ".weight_scale", ".1.weight", "s.0.weight"};
      const size_t dot = t.name.rfind('.');
      const std::string name = t.name.substr(0, dot == std::string::npos ? t.name.size() : dot) + in.pick(kSuffixes);
      if (!m.find(name)) t.name = name;
      break;
    }
    case Op::RenameBlock: {  // the first number in the name changed: another block, layer or part
      const size_t digit = t.name.find_first_of("0123456789");
      const std::string name = digit == std::string::npos ? t.name : std::string(t.name).replace(digit, 1, std::to_string(in.below(4)));
      if (!m.find(name)) t.name = name;
      break;
    }
    case Op::SetDim:
      if (!t.shape.empty()) {
        const size_t dim = in.below(t.shape.size());
        const size_t how = in.below(std::size(kDims) + 4);  // a listed size, or old - 1, old + 1, old * 2, old / 2
        const int64_t old = t.shape[dim];
        const int64_t relative[] = {std::max<int64_t>(old, 1) - 1, std::min<int64_t>(old, INT64_MAX - 1) + 1,
                                    old <= INT64_MAX / 2 ? old * 2 : old, old / 2};
        t.shape[dim] = how < std::size(kDims) ? kDims[how] : relative[how - std::size(kDims)];
        if (tensor_bytes(t) > kMaxTensorBytes) t.shape[dim] = old;
      }
      break;
    case Op::HugeDim:  // a zero-element tensor with a huge dimension: tiny file, absurd shape
      if (!t.shape.empty()) {
        const size_t huge = in.below(t.shape.size());
        t.shape[huge] = in.pick(kHugeDims);
        const size_t zero = in.below(t.shape.size());
        t.shape[zero] = 0;
      }
      break;
    case Op::AddDim:
      if (t.shape.size() < 5) {
        const size_t at = in.below(t.shape.size() + 1);
        t.shape.insert(t.shape.begin() + static_cast<ptrdiff_t>(at), in.pick(kDims));
        if (tensor_bytes(t) > kMaxTensorBytes) t.shape.erase(t.shape.begin() + static_cast<ptrdiff_t>(at));
      }
      break;
    case Op::DropDim:
      if (!t.shape.empty()) t.shape.erase(t.shape.begin() + static_cast<ptrdiff_t>(in.below(t.shape.size())));
      break;
    case Op::Scalar:  // rank 0: a loader that reads shape[0] unchecked reads past an empty vector
      t.shape.clear();
      break;
    case Op::SetDtype:
      t.dtype = in.pick(kDtypes);
      if (tensor_bytes(t) > kMaxTensorBytes) t.dtype = DType::U8;
      break;
    case Op::Quantize:
      quantize(m, index);
      break;
    case Op::Poison:
      t.poisoned = !t.poisoned;
      break;
    case Op::SetConfig: {
      m.has_config = true;
      const char* key = in.pick(kConfigKeys);
      m.config[key] = in.pick(kConfigValues);
      break;
    }
    case Op::EraseConfig:
      if (in.byte() % 4 == 0) {
        m.has_config = false;
      } else {
        m.config.erase(in.pick(kConfigKeys));
      }
      break;
    case Op::RawConfig:  // a "config" that is not a JSON object, from the input's bytes
      m.has_config = false;
      m.metadata["config"] = in.bytes(in.below(32));
      break;
    case Op::SetMetadata: {
      const char* key = in.pick(kMetadataKeys);
      m.metadata[key] = in.pick(kMetadataValues);
      break;
    }
    case Op::CopyBlock: {  // another block (or layer) beyond the ones the config counts
      const std::string name = t.name;
      const size_t digit = name.find_first_of("0123456789");
      if (digit == std::string::npos) break;
      const std::string to = std::to_string(2 + in.below(3));
      const std::string from = name.substr(0, digit + 1);
      std::vector<TensorSpec> copies;
      for (const TensorSpec& other : m.tensors) {
        if (other.name.compare(0, from.size(), from) != 0) continue;
        TensorSpec copy = other;
        copy.name.replace(digit, 1, to);
        if (!m.find(copy.name)) copies.push_back(std::move(copy));
      }
      m.tensors.insert(m.tensors.end(), copies.begin(), copies.end());
      break;
    }
    case Op::Count:
      break;
  }
}

// How the mutations changed the base model (verbose mode).
void print_changes(const ModelFile& base, const ModelFile& m) {
  const auto line = [](const char* mark, const TensorSpec& t) {
    std::fprintf(stderr, "%s %s %s %s%s\n", mark, t.name.c_str(), std::string(tiledraw::dtype_name(t.dtype)).c_str(),
                 tiledraw::shape_string(t.shape).c_str(), t.poisoned ? " poisoned" : "");
  };
  for (const TensorSpec& t : m.tensors) {
    const TensorSpec* before = base.find(t.name);
    if (!before || before->dtype != t.dtype || before->shape != t.shape || t.poisoned) line(before ? "~" : "+", t);
  }
  for (const TensorSpec& t : base.tensors) {
    if (!m.find(t.name)) line("-", t);
  }
  std::map<std::string, std::string> metadata = m.metadata;
  if (m.has_config) metadata["config"] = m.config.dump();
  for (const auto& [key, value] : metadata) std::fprintf(stderr, "metadata %s = %s\n", key.c_str(), value.c_str());
}

std::string file_bytes(const ModelFile& m) {
  std::vector<fuzz::TensorBytes> tensors;
  uint64_t total = 0;
  for (const TensorSpec& t : m.tensors) {
    const uint64_t size = tensor_bytes(t);
    if (size > kMaxTensorBytes || total + size > kMaxFileBytes) continue;
    total += size;
    tensors.push_back({t.name, t.dtype, t.shape,
                       t.poisoned ? std::string(size, '\xff') : fuzz::small_values(t.dtype, size / tiledraw::dtype_size(t.dtype))});
  }
  std::map<std::string, std::string> metadata = m.metadata;
  if (m.has_config) metadata["config"] = m.config.dump();
  return fuzz::safetensors_bytes(tensors, metadata);
}

// Inputs of a graph: latents and images get small values, timesteps a late
// step, class ids `class_id` (the null class of a DiT: the table's last row).
std::vector<std::vector<float>> graph_inputs(const tiledraw::runtime::Graph& g, float class_id) {
  std::vector<std::vector<float>> inputs;
  for (int id : g.inputs()) {
    const tiledraw::runtime::Value& v = g.values()[static_cast<size_t>(id)];
    const bool ids = v.shape.size() == 1;
    inputs.emplace_back(static_cast<size_t>(v.numel()), ids ? class_id : 0.25f);
  }
  if (inputs.size() == 3) std::fill(inputs[1].begin(), inputs[1].end(), 999.0f);  // DiT: latents, timesteps, classes
  return inputs;
}

void run(const tiledraw::runtime::Graph& g, const tiledraw::Accelerator& accel, float class_id) {
  const std::vector<std::vector<float>> inputs = graph_inputs(g, class_id);
  std::vector<const float*> pointers;
  for (const std::vector<float>& input : inputs) pointers.push_back(input.data());
  tiledraw::ProgramCache cache;
  tiledraw::runtime::Executor executor(g, accel, cache);
  executor.run(pointers);
}

void load_and_run(Kind kind, const tiledraw::SafetensorsFile& file, const tiledraw::Accelerator& accel, Precision precision) {
  namespace models = tiledraw::models;
  switch (kind) {
    case Kind::DitOriginal:
    case Kind::DitDiffusers: {
      const models::DitModel model(file, accel, precision);
      const int64_t side = 2 * model.config().patch_size;
      run(model.build({1, side, side})->graph, accel, static_cast<float>(model.config().num_classes));
      break;
    }
    case Kind::Vae: {
      const models::VaeDecoder model(file, accel, precision);
      run(model.build(1, 2, 2)->graph, accel, 0.0f);
      break;
    }
    case Kind::Mlp: {
      const models::MlpClassifier model(file, accel, precision);
      run(model.build(1)->graph, accel, 0.0f);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile input;
  static const std::unique_ptr<tiledraw::Accelerator> accel = tiledraw::make_accelerator("ref");

  fuzz::ByteReader in(data, size);
  const Kind kind = in.pick(kKinds);
  ModelFile model = base_model(kind);
  constexpr DType kBaseDtypes[] = {DType::F32, DType::F16, DType::BF16, DType::I8};
  const DType base = in.pick(kBaseDtypes);
  for (size_t i = 0, count = model.tensors.size(); i < count; ++i) {
    const TensorSpec& t = model.tensors[i];
    const bool matrix = t.shape.size() >= 2 && t.name.ends_with(".weight") && t.name.find("embedding") == std::string::npos;
    if (base != DType::I8) {
      model.tensors[i].dtype = base;
    } else if (matrix) {
      quantize(model, i);  // 8-bit S, as the converter writes it (other tensors stay F32)
    }
  }
  const Precision precision = in.pick(kPrecisions);
  const std::optional<ModelFile> before = fuzz::verbose() ? std::optional(model) : std::nullopt;
  for (size_t i = 0; i < kMaxMutations && !in.empty(); ++i) mutate(model, in);
  if (before) print_changes(*before, model);

  const std::string path = input.write(file_bytes(model));
  try {
    tiledraw::inspect_checkpoint(path);  // family detection reads the names and shapes alone
  } catch (const tiledraw::Error& error) {
    fuzz::refused(error);
  }
  try {
    const tiledraw::SafetensorsFile file = tiledraw::SafetensorsFile::open(path);
    load_and_run(kind, file, *accel, precision);
  } catch (const tiledraw::Error& error) {
    fuzz::refused(error);  // a file the loader refuses, or a graph that does not fit together
  }
  return 0;
}
