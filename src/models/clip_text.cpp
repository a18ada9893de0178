#include "models/clip_text.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw::models {
namespace {

constexpr const char* kKind = "a CLIP text encoder";
constexpr const char* kExpected =
    "expected Hugging Face's CLIPTextModel: text_model.embeddings.{token_embedding, position_embedding}, "
    "text_model.encoder.layers.N.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}, "
    "text_model.final_layer_norm; or OpenCLIP's: token_embedding, positional_embedding, "
    "transformer.resblocks.N.{ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_final";

// Canonical names are Hugging Face's, with q, k and v as one fused projection.
const std::string kTokens = "text_model.embeddings.token_embedding.weight";
const std::string kPositions = "text_model.embeddings.position_embedding.weight";
const std::string kFinalNorm = "text_model.final_layer_norm";

std::string layer(int64_t l, const std::string& part) { return "text_model.encoder.layers." + std::to_string(l) + "." + part; }

bool openclip_layout(const WeightView& view) {
  return view.find("token_embedding.weight") && view.find("positional_embedding");
}

WeightView::Rename layout_rename(bool openclip) {
  const std::string hf = "text_model.encoder.layers.{}.";
  if (!openclip) {
    const std::string attn = "text_model.encoder.layers.{}.self_attn.";
    return rename_by_rules({{hf + "self_attn.qkv_proj", {attn + "q_proj", attn + "k_proj", attn + "v_proj"}}});
  }
  const std::string block = "transformer.resblocks.{}.";
  return rename_by_rules({
      {kTokens, {"token_embedding.weight"}},
      {kPositions, {"positional_embedding"}},
      {hf + "layer_norm1", {block + "ln_1"}},
      {hf + "layer_norm2", {block + "ln_2"}},
      {hf + "self_attn.qkv_proj.weight", {block + "attn.in_proj_weight"}},  // q, k, v stacked already
      {hf + "self_attn.qkv_proj.bias", {block + "attn.in_proj_bias"}},
      {hf + "self_attn.out_proj", {block + "attn.out_proj"}},
      {hf + "mlp.fc1", {block + "mlp.c_fc"}},
      {hf + "mlp.fc2", {block + "mlp.c_proj"}},
      {kFinalNorm, {"ln_final"}},
  });
}

WeightView canonical_view(const WeightView& view) { return view.renamed(layout_rename(openclip_layout(view))); }

kernels::Unary activation_named(const std::string& name, const std::string& path) {
  if (name == "quick_gelu") return kernels::Unary::QuickGelu;
  if (name == "gelu") return kernels::Unary::GeluErf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return kernels::Unary::GeluTanh;
  throw Error(path + ": hidden_act '" + name + "' is not one of quick_gelu, gelu, gelu_new, gelu_pytorch_tanh");
}

ClipTextConfig read_config(const WeightView& view, bool openclip) {
  const std::string path = view.file().path();
  const auto require = [&](const std::string& name) -> const TensorInfo& { return require_tensor(view, name, kKind, kExpected); };
  const auto require_matrix = [&](const std::string& name, int64_t cols) -> const TensorInfo& {
    const TensorInfo& t = require(name);
    if (t.shape.size() != 2 || t.shape[0] <= 0 || t.shape[1] <= 0 || (cols && t.shape[1] != cols)) {
      throw Error(path + ": '" + t.name + "' has shape " + shape_string(t.shape) + ", expected [rows, " +
                  (cols ? std::to_string(cols) : std::string("width")) + "]");
    }
    return t;
  };
  ClipTextConfig c;
  const TensorInfo& tokens = require_matrix(kTokens, 0);
  c.vocabulary = tokens.shape[0];
  c.width = tokens.shape[1];
  c.positions = require_matrix(kPositions, c.width).shape[0];
  while (view.find(layer(c.layers, "mlp.fc1.weight"))) ++c.layers;
  c.heads = c.width / 64;
  c.activation = openclip ? kernels::Unary::GeluErf : kernels::Unary::QuickGelu;

  const nlohmann::json& json = view.config();
  const auto integer = [&](const char* key, int64_t fallback) {
    return json.contains(key) && json[key].is_number_integer() ? json[key].get<int64_t>() : fallback;
  };
  if (integer("hidden_size", c.width) != c.width || integer("max_position_embeddings", c.positions) != c.positions ||
      integer("vocab_size", c.vocabulary) != c.vocabulary) {
    throw Error(path + ": the config disagrees with the tensor shapes (width " + std::to_string(c.width) + ", " +
                std::to_string(c.positions) + " positions, " + std::to_string(c.vocabulary) + " tokens)");
  }
  // A config may use fewer layers than are stored; never more.
  const int64_t configured = integer("num_hidden_layers", c.layers);
  if (configured <= 0 || configured > c.layers) {
    throw Error(path + ": num_hidden_layers is " + std::to_string(configured) + " but " + std::to_string(c.layers) +
                " layers are stored");
  }
  c.layers = configured;
  c.heads = integer("num_attention_heads", c.heads);
  if (json.contains("hidden_act") && json["hidden_act"].is_string()) {
    c.activation = activation_named(json["hidden_act"].get<std::string>(), path);
  }
  if (json.contains("layer_norm_eps") && json["layer_norm_eps"].is_number()) c.layer_norm_eps = json["layer_norm_eps"].get<float>();
  if (c.heads <= 0 || c.width % c.heads) {
    throw Error(path + ": width " + std::to_string(c.width) + " does not split into " + std::to_string(c.heads) +
                " heads; give num_attention_heads in a config");
  }
  if (!(c.layer_norm_eps > 0.0f)) throw Error(path + ": layer_norm_eps must be positive");
  return c;
}

// The pooled output's projection as a linear layer's weight [projection,
// width]: Hugging Face's text_projection.weight as stored (floats or 8-bit
// S), or OpenCLIP's text_projection [width, projection] (used as x @ P) turned
// round. Empty when the file has neither.
std::vector<float> read_projection(const WeightView& view, int64_t width) {
  const SafetensorsFile& file = view.file();
  const TensorInfo* linear = view.find("text_projection.weight");
  const TensorInfo* matrix = linear ? linear : view.find("text_projection");
  if (!matrix) return {};
  const int64_t projection = matrix->shape.size() == 2 ? matrix->shape[linear ? 0 : 1] : 0;
  if (projection <= 0 || matrix->shape[linear ? 1 : 0] != width) {
    throw Error(file.path() + ": '" + matrix->name + "' has shape " + shape_string(matrix->shape) + ", expected " +
                (linear ? "[projection, " + std::to_string(width) + "]" : "[" + std::to_string(width) + ", projection]"));
  }
  std::vector<float> stored(static_cast<size_t>(matrix->numel()));
  if (holds_8bit_s_values(file, *matrix)) {
    const TensorInfo* scale = file.find(scale_tensor_name(matrix->name));
    if (!scale) throw Error(file.path() + ": '" + matrix->name + "' is I8 but has no '" + scale_tensor_name(matrix->name) + "'");
    stored = Weight8BitS{matrix, scale, matrix->shape[0], matrix->shape[1]}.dequantize(file);
  } else if (is_float_dtype(matrix->dtype)) {
    convert_to_f32(matrix->dtype, file.data(*matrix).data(), stored.data(), stored.size());
  } else {
    throw Error(file.path() + ": tensor '" + matrix->name + "' is " + std::string(dtype_name(matrix->dtype)) + ", expected floats");
  }
  if (linear) return stored;
  std::vector<float> turned(stored.size());
  for (int64_t k = 0; k < width; ++k) {
    for (int64_t j = 0; j < projection; ++j) turned[static_cast<size_t>(j * width + k)] = stored[static_cast<size_t>(k * projection + j)];
  }
  return turned;
}

}  // namespace

bool holds_clip_text(const WeightView& view) {
  const WeightView canonical = canonical_view(view);
  return canonical.find(kTokens) && canonical.find(kPositions) && canonical.find(layer(0, "mlp.fc1.weight"));
}

ClipTextEncoder::ClipTextEncoder(const WeightView& view, const Accelerator& accel, Precision precision)
    : config_(read_config(canonical_view(view), openclip_layout(view))),
      weights_(canonical_view(view), accel, precision, kKind, kExpected) {
  const int64_t width = config_.width;
  const auto norm = [&](const std::string& prefix) {
    for (const char* part : {".weight", ".bias"}) {
      const TensorInfo& t = weights_.require(prefix + part);
      if (t.numel() != width) {
        throw Error(weights_.path() + ": '" + t.name + "' has " + std::to_string(t.numel()) + " values, expected " + std::to_string(width));
      }
    }
    return std::pair{weights_.floats(prefix + ".weight"), weights_.floats(prefix + ".bias")};
  };
  // A layer of the expected shape, or an error naming its tensor (the graph
  // would refuse it later without saying which file or tensor).
  const auto checked_linear = [&](const std::string& prefix, int64_t rows, int64_t cols) {
    LinearWeights w = weights_.linear(prefix);
    if ((rows && w.out_features() != rows) || w.in_features() != cols) {
      throw Error(weights_.path() + ": '" + w.name + ".weight' is [" + std::to_string(w.out_features()) + ", " +
                  std::to_string(w.in_features()) + "], expected [" + (rows ? std::to_string(rows) : "mlp") + ", " +
                  std::to_string(cols) + "]");
    }
    return w;
  };
  token_table_ = weights_.stored_table(kTokens);
  position_table_ = weights_.floats(kPositions);
  for (int64_t l = 0; l < config_.layers; ++l) {
    const auto [norm1_gamma, norm1_beta] = norm(layer(l, "layer_norm1"));
    const auto [norm2_gamma, norm2_beta] = norm(layer(l, "layer_norm2"));
    LinearWeights fc1 = checked_linear(layer(l, "mlp.fc1"), 0, width);
    const int64_t mlp = fc1.out_features();
    layers_.push_back({norm1_gamma, norm1_beta, norm2_gamma, norm2_beta,
                       checked_linear(layer(l, "self_attn.qkv_proj"), 3 * width, width),
                       checked_linear(layer(l, "self_attn.out_proj"), width, width), std::move(fc1),
                       checked_linear(layer(l, "mlp.fc2"), width, mlp)});
  }
  std::tie(final_gamma_, final_beta_) = norm(kFinalNorm);
  layer_parts_ = weights_.layer_parts();
  for (int64_t l = 0; l < config_.layers; ++l) {
    const LinearWeights& qkv = layers_[static_cast<size_t>(l)].qkv;
    const char* const projections[] = {"q_proj", "k_proj", "v_proj"};
    for (int64_t i = 0; i < 3; ++i) {
      layer_parts_.push_back({{layer(l, std::string("self_attn.") + projections[i])}, qkv.identity(), i * width, width,
                              3 * width, width, qkv.weight ? runtime::FloatWeight{} : qkv.float_weight});
    }
  }
  projection_ = read_projection(weights_.view(), width);
  config_.projection = static_cast<int64_t>(projection_.size()) / width;
}

std::unique_ptr<ClipTextEncoder::Graph> ClipTextEncoder::build(int64_t batch, const Outputs& outputs) const {
  const ClipTextConfig& c = config_;
  if (batch <= 0) throw Error("CLIP text encoder: batch " + std::to_string(batch) + " must be positive");
  if (outputs.layers < 1 || outputs.layers > c.layers) {
    throw Error("CLIP text encoder: cannot stop after layer " + std::to_string(outputs.layers) + " of a model of " +
                std::to_string(c.layers) + " layers");
  }
  auto model = std::make_unique<Graph>();
  runtime::Graph& g = model->graph;
  const auto final_norm = [&](int x) { return g.layer_norm(x, final_gamma_, final_beta_, c.layer_norm_eps); };
  const auto take = [&](int x) { return outputs.final_norm ? final_norm(x) : x; };
  g.set_adapters(outputs.adapters);
  model->ids = g.input({batch, c.positions});
  const int embedded = g.reshape(g.embedding(model->ids, token_table_, c.vocabulary, c.width), {batch, c.positions * c.width});
  int x = g.reshape(g.binary(kernels::Binary::Add, embedded, g.constant({c.positions * c.width}, position_table_)),
                    {batch, c.positions, c.width});
  const int64_t depth = outputs.for_pooling ? c.layers : outputs.layers;
  for (int64_t l = 0; l < depth; ++l) {
    if (l == outputs.layers) model->hidden_states = take(x);
    const Layer& w = layers_[static_cast<size_t>(l)];
    const std::vector<int> qkv = g.chunk(linear(g, g.layer_norm(x, w.norm1_gamma, w.norm1_beta, c.layer_norm_eps), w.qkv), 3);
    const int attended = g.attention(qkv[0], qkv[1], qkv[2], c.heads, attention_math(w.qkv), true);
    x = g.binary(kernels::Binary::Add, x, linear(g, attended, w.out));
    const int hidden = g.unary(c.activation, linear(g, g.layer_norm(x, w.norm2_gamma, w.norm2_beta, c.layer_norm_eps), w.fc1));
    x = g.binary(kernels::Binary::Add, x, linear(g, hidden, w.fc2));
  }
  if (outputs.layers == depth) model->hidden_states = take(x);
  g.output(model->hidden_states);
  if (outputs.for_pooling) {
    model->pooling_source = outputs.layers == depth && outputs.final_norm ? model->hidden_states : final_norm(x);
    if (model->pooling_source != model->hidden_states) g.output(model->pooling_source);
  }
  return model;
}

std::vector<float> ClipTextEncoder::pooled(const float* ids, const float* states, int64_t batch) const {
  const int64_t width = config_.width, positions = config_.positions;
  const int64_t columns = pooled_width();
  std::vector<float> out(static_cast<size_t>(batch * columns));
  for (int64_t b = 0; b < batch; ++b) {
    const float* row_ids = ids + b * positions;
    const int64_t eos = std::max_element(row_ids, row_ids + positions) - row_ids;  // the first of equal largest ids
    const float* h = states + (b * positions + eos) * width;
    float* pooled = &out[static_cast<size_t>(b * columns)];
    if (!config_.projection) {
      std::copy(h, h + width, pooled);
      continue;
    }
    for (int64_t j = 0; j < columns; ++j) {
      const float* p = &projection_[static_cast<size_t>(j * width)];
      double sum = 0.0;
      for (int64_t k = 0; k < width; ++k) sum += static_cast<double>(p[k]) * h[k];
      pooled[j] = static_cast<float>(sum);
    }
  }
  return out;
}

}  // namespace tiledraw::models
