#include "models/dit.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw::models {

int dit_block(runtime::Graph& g, int x, int silu_c, const DitBlockWeights& w, int64_t heads, float mlp_norm_eps) {
  const std::vector<int> mod = g.chunk(linear(g, silu_c, w.ada_ln), 6);
  const int shift1 = mod[0], scale1 = mod[1], gate1 = mod[2], shift2 = mod[3], scale2 = mod[4], gate2 = mod[5];

  const int h1 = g.modulated_layer_norm(x, scale1, shift1, 1e-6f);
  const int attended = g.attention(linear(g, h1, w.qkv), heads, attention_math(w.qkv));
  x = g.gated_residual(x, linear(g, attended, w.proj), gate1);

  const int h2 = g.modulated_layer_norm(x, scale2, shift2, mlp_norm_eps);
  const int hidden = linear(g, h2, w.fc1, Activation::GeluTanh);
  return g.gated_residual(x, linear(g, hidden, w.fc2), gate2);
}

std::vector<float> dit_position_embedding(int64_t width, int64_t rows, int64_t cols, int64_t base_rows,
                                          int64_t base_cols) {
  const int64_t quarter = width / 4;
  const double row_step = base_rows > 0 ? static_cast<double>(base_rows) / static_cast<double>(rows) : 1.0;
  const double col_step = base_cols > 0 ? static_cast<double>(base_cols) / static_cast<double>(cols) : 1.0;
  std::vector<float> table(static_cast<size_t>(rows * cols * width));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float* out = &table[static_cast<size_t>((r * cols + c) * width)];
      for (int64_t half = 0; half < 2; ++half) {
        const double position = half == 0 ? static_cast<double>(c) * col_step : static_cast<double>(r) * row_step;
        for (int64_t i = 0; i < quarter; ++i) {
          const double angle = position / std::pow(10000.0, static_cast<double>(i) / static_cast<double>(quarter));
          out[half * width / 2 + i] = static_cast<float>(std::sin(angle));
          out[half * width / 2 + quarter + i] = static_cast<float>(std::cos(angle));
        }
      }
    }
  }
  return table;
}

namespace {

// Head counts of the published DiT sizes (S, B, L, XL); others need the config.
int64_t heads_for_width(int64_t width) {
  switch (width) {
    case 384:
      return 6;
    case 768:
      return 12;
    case 1024:
    case 1152:
      return 16;
    default:
      return width % 64 == 0 ? width / 64 : 0;
  }
}

constexpr const char* kExpectedLayouts =
    "expected the original DiT layout (x_embedder.proj, t_embedder.mlp.0/2, y_embedder.embedding_table, "
    "blocks.N.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}, final_layer.{linear, adaLN_modulation.1}) "
    "or diffusers' DiTTransformer2DModel (pos_embed.proj, transformer_blocks.N.{norm1.emb, norm1.linear, "
    "attn1.to_q/to_k/to_v/to_out.0, ff.net.0.proj, ff.net.2}, proj_out_1, proj_out_2)";

constexpr const char* kKind = "a DiT checkpoint";

const TensorInfo& require(const SafetensorsFile& file, const std::string& name) {
  return require_tensor(file, name, kKind, kExpectedLayouts);
}

// The name of each weight in a layout. Block parts take the block's index.
enum class Part { PatchEmbed, TimeMlp0, TimeMlp2, ClassTable, AdaLn, Qkv, Proj, Fc1, Fc2, FinalAdaLn, FinalLinear };

std::vector<std::string> tensor_prefixes(DitLayout layout, Part part, int64_t block = 0) {
  const std::string b = std::to_string(block);
  if (layout == DitLayout::Original) {
    const std::string p = "blocks." + b + ".";
    switch (part) {
      case Part::PatchEmbed: return {"x_embedder.proj"};
      case Part::TimeMlp0: return {"t_embedder.mlp.0"};
      case Part::TimeMlp2: return {"t_embedder.mlp.2"};
      case Part::ClassTable: return {"y_embedder.embedding_table"};
      case Part::AdaLn: return {p + "adaLN_modulation.1"};
      case Part::Qkv: return {p + "attn.qkv"};
      case Part::Proj: return {p + "attn.proj"};
      case Part::Fc1: return {p + "mlp.fc1"};
      case Part::Fc2: return {p + "mlp.fc2"};
      case Part::FinalAdaLn: return {"final_layer.adaLN_modulation.1"};
      case Part::FinalLinear: return {"final_layer.linear"};
    }
  }
  const std::string p = "transformer_blocks." + b + ".";
  switch (part) {
    case Part::PatchEmbed: return {"pos_embed.proj"};
    case Part::TimeMlp0: return {p + "norm1.emb.timestep_embedder.linear_1"};
    case Part::TimeMlp2: return {p + "norm1.emb.timestep_embedder.linear_2"};
    case Part::ClassTable: return {p + "norm1.emb.class_embedder.embedding_table"};
    case Part::AdaLn: return {p + "norm1.linear"};
    case Part::Qkv: return {p + "attn1.to_q", p + "attn1.to_k", p + "attn1.to_v"};
    case Part::Proj: return {p + "attn1.to_out.0"};
    case Part::Fc1: return {p + "ff.net.0.proj"};
    case Part::Fc2: return {p + "ff.net.2"};
    case Part::FinalAdaLn: return {"proj_out_1"};
    case Part::FinalLinear: return {"proj_out_2"};
  }
  return {};
}

std::string weight_of(DitLayout layout, Part part, int64_t block = 0) {
  return tensor_prefixes(layout, part, block).front() + ".weight";
}

DitConfig read_config(const SafetensorsFile& file) {
  DitConfig c;
  c.layout = file.find("pos_embed.proj.weight") && !file.find("x_embedder.proj.weight") ? DitLayout::Diffusers
                                                                                          : DitLayout::Original;
  const DitLayout layout = c.layout;
  const TensorInfo& patch = require(file, weight_of(layout, Part::PatchEmbed));
  if (patch.shape.size() != 4 || patch.shape[2] != patch.shape[3] || patch.numel() == 0) {
    throw Error(file.path() + ": " + patch.name + " has shape " + shape_string(patch.shape) +
                ", expected [hidden, channels, patch, patch]");
  }
  c.hidden_size = patch.shape[0];
  c.in_channels = patch.shape[1];
  c.patch_size = patch.shape[2];
  while (file.find(weight_of(layout, Part::Fc1, c.depth))) ++c.depth;
  // A tensor's first dimension, 0 for a scalar (the checks below and the loading then refuse it).
  const auto rows = [&](Part part) {
    const TensorInfo& t = require(file, weight_of(layout, part));
    return t.shape.empty() ? int64_t{0} : t.shape[0];
  };
  c.mlp_hidden = c.depth ? rows(Part::Fc1) : 0;
  c.num_classes = rows(Part::ClassTable) - 1;
  const int64_t outputs = rows(Part::FinalLinear);
  c.learn_sigma = outputs == c.patch_size * c.patch_size * 2 * c.in_channels;
  if (const TensorInfo* pos = file.find("pos_embed"); pos && pos->shape.size() == 3) {
    c.input_size = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pos->shape[1])))) * c.patch_size;
  }
  c.num_heads = heads_for_width(c.hidden_size);
  if (layout == DitLayout::Diffusers) {
    c.frequency_shift = 1;
    c.mlp_norm_eps = 1e-5f;
  }
  // The config wins where it says more than the shapes (heads, trained size, epsilon).
  const nlohmann::json json = model_config_json(file);
  const auto get = [&](const char* key, int64_t fallback) {
    return json.contains(key) && json[key].is_number_integer() ? json[key].get<int64_t>() : fallback;
  };
  c.num_heads = get("num_heads", get("num_attention_heads", c.num_heads));
  c.input_size = get("input_size", get("sample_size", c.input_size));
  if (json.contains("norm_eps") && json["norm_eps"].is_number()) c.mlp_norm_eps = json["norm_eps"].get<float>();
  if (get("hidden_size", c.hidden_size) != c.hidden_size || get("depth", get("num_layers", c.depth)) != c.depth ||
      get("patch_size", c.patch_size) != c.patch_size || get("in_channels", c.in_channels) != c.in_channels) {
    throw Error(file.path() + ": the config disagrees with the tensor shapes (hidden " + std::to_string(c.hidden_size) +
                ", depth " + std::to_string(c.depth) + ", patch " + std::to_string(c.patch_size) + ", channels " +
                std::to_string(c.in_channels) + ")");
  }
  if (c.depth == 0 || c.num_heads <= 0 || c.hidden_size % c.num_heads != 0 || c.num_classes < 1 ||
      outputs != c.patch_size * c.patch_size * c.out_channels()) {
    throw Error(file.path() + ": cannot tell this DiT's configuration from its tensors; give a 'config' in the metadata");
  }
  return c;
}

bool same_bytes(const SafetensorsFile& file, const std::string& a, const std::string& b) {
  const TensorInfo* x = file.find(a);
  const TensorInfo* y = file.find(b);
  if (x == y) return x != nullptr;  // the original layout names one shared tensor in every block
  if (!x || !y || x->dtype != y->dtype || x->shape != y->shape) return false;
  const auto bx = file.data(*x), by = file.data(*y);
  return bx.size() == by.size() && std::equal(bx.begin(), bx.end(), by.begin());
}

}  // namespace

DitModel::Conditioning DitModel::conditioning(int64_t block) {
  const DitLayout layout = config_.layout;
  // The embedding op reads rows of hidden_size floats for ids up to num_classes.
  const std::string table = weight_of(layout, Part::ClassTable, block);
  const std::vector<int64_t> expected = {config_.num_classes + 1, config_.hidden_size};
  if (weights_.require(table).shape != expected) {
    throw Error(weights_.file().path() + ": '" + table + "' has shape " + shape_string(weights_.require(table).shape) +
                ", expected " + shape_string(expected));
  }
  return {weights_.linear(tensor_prefixes(layout, Part::TimeMlp0, block)),
          weights_.linear(tensor_prefixes(layout, Part::TimeMlp2, block)),
          weights_.floats(table)};
}

DitModel::DitModel(const SafetensorsFile& file, const Accelerator& accel, Precision precision)
    : config_(read_config(file)), weights_(file, accel, precision, kKind, kExpectedLayouts) {
  const DitLayout layout = config_.layout;
  patch_embed_ = weights_.linear(tensor_prefixes(layout, Part::PatchEmbed));
  conditionings_.push_back(conditioning(0));
  for (int64_t b = 0; b < config_.depth; ++b) {
    const auto block_part = [&](Part part) { return weights_.linear(tensor_prefixes(layout, part, b)); };
    blocks_.push_back({block_part(Part::AdaLn), block_part(Part::Qkv), block_part(Part::Proj), block_part(Part::Fc1),
                       block_part(Part::Fc2)});
    bool shared = true;
    for (Part part : {Part::TimeMlp0, Part::TimeMlp2}) {
      for (const char* kind : {".weight", ".bias"}) {
        shared = shared && same_bytes(file, tensor_prefixes(layout, part, 0)[0] + kind, tensor_prefixes(layout, part, b)[0] + kind);
      }
    }
    shared = shared && same_bytes(file, weight_of(layout, Part::ClassTable, 0), weight_of(layout, Part::ClassTable, b));
    if (!shared) conditionings_.push_back(conditioning(b));
    block_conditioning_.push_back(shared ? 0 : conditionings_.size() - 1);
  }
  final_ada_ln_ = weights_.linear(tensor_prefixes(layout, Part::FinalAdaLn));
  final_linear_ = weights_.linear(tensor_prefixes(layout, Part::FinalLinear));
}

int DitModel::conditioning_graph(runtime::Graph& g, const Conditioning& c, int timesteps, int classes) const {
  const int t_freq = g.timestep_embedding(timesteps, c.t_mlp0.in_features(), config_.frequency_shift);
  const int t = linear(g, linear(g, t_freq, c.t_mlp0, Activation::Silu), c.t_mlp2);
  const int y = g.embedding(classes, c.class_table, config_.num_classes + 1, config_.hidden_size);
  return g.unary(kernels::Unary::Silu, g.binary(kernels::Binary::Add, t, y));
}

std::unique_ptr<DitModel::Graph> DitModel::build(int64_t batch, int64_t height, int64_t width) const {
  const DitConfig& c = config_;
  if (batch <= 0 || height <= 0 || width <= 0 || height % c.patch_size || width % c.patch_size) {
    throw Error("DiT input of " + std::to_string(height) + " x " + std::to_string(width) +
                " latents: height and width must be positive multiples of the patch size " +
                std::to_string(c.patch_size));
  }
  const int64_t rows = height / c.patch_size, cols = width / c.patch_size, tokens = rows * cols;
  const float* positions = position_table(rows, cols);

  auto model = std::make_unique<Graph>();
  runtime::Graph& g = model->graph;
  model->latents = g.input({batch, c.in_channels, height, width});
  model->timesteps = g.input({batch});
  model->classes = g.input({batch});
  int x = linear(g, g.patchify(model->latents, c.patch_size), patch_embed_);
  const int flat = g.binary(kernels::Binary::Add, g.reshape(x, {batch, tokens * c.hidden_size}),
                            g.constant({tokens * c.hidden_size}, positions));
  x = g.reshape(flat, {batch, tokens, c.hidden_size});

  std::vector<int> silu_c;
  for (const Conditioning& cond : conditionings_) silu_c.push_back(conditioning_graph(g, cond, model->timesteps, model->classes));
  for (size_t b = 0; b < blocks_.size(); ++b) {
    x = dit_block(g, x, silu_c[block_conditioning_[b]], blocks_[b], c.num_heads, c.mlp_norm_eps);
  }

  const std::vector<int> final_mod = g.chunk(linear(g, silu_c[0], final_ada_ln_), 2);  // shift, scale
  const int h = g.modulated_layer_norm(x, final_mod[1], final_mod[0], 1e-6f);
  model->output = g.unpatchify(linear(g, h, final_linear_), c.out_channels(), height, width, c.patch_size);
  g.output(model->output);
  return model;
}

const float* DitModel::position_table(int64_t rows, int64_t cols) const {
  std::lock_guard lock(positions_mutex_);
  auto& [reservation, table] = positions_[{rows, cols}];
  if (table.empty()) {
    reservation = MemoryReservation(static_cast<uint64_t>(rows * cols * config_.hidden_size) * sizeof(float),
                                    "the position table of " + std::to_string(rows) + " x " + std::to_string(cols) + " tokens");
    // The checkpoint's own table where it has one for this grid (it is the same formula), else computed.
    const TensorInfo* stored = weights_.file().find("pos_embed");
    if (stored && rows == cols && rows * config_.patch_size == config_.input_size &&
        stored->numel() == rows * cols * config_.hidden_size && is_float_dtype(stored->dtype)) {
      table.resize(static_cast<size_t>(stored->numel()));
      convert_to_f32(stored->dtype, weights_.file().data(*stored).data(), table.data(), table.size());
    } else {
      const int64_t trained = config_.input_size / config_.patch_size;
      table = dit_position_embedding(config_.hidden_size, rows, cols, trained, trained);
    }
  }
  return table.data();
}

}  // namespace tiledraw::models
