#include "models/dit.h"

#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>

#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw::models {

int linear(runtime::Graph& g, int x, const LinearWeights& w, Activation activation) {
  return w.weight ? g.linear(x, *w.weight, w.bias, activation) : g.linear(x, w.float_weight, w.bias, activation);
}

int dit_block(runtime::Graph& g, int x, int silu_c, const DitBlockWeights& w, int64_t heads) {
  constexpr float kEps = 1e-6f;
  const std::vector<int> mod = g.chunk(linear(g, silu_c, w.ada_ln), 6);
  const int shift1 = mod[0], scale1 = mod[1], gate1 = mod[2], shift2 = mod[3], scale2 = mod[4], gate2 = mod[5];

  const int h1 = g.modulated_layer_norm(x, scale1, shift1, kEps);
  const int attended = g.attention(linear(g, h1, w.qkv), heads);
  x = g.gated_residual(x, linear(g, attended, w.proj), gate1);

  const int h2 = g.modulated_layer_norm(x, scale2, shift2, kEps);
  const int hidden = linear(g, h2, w.fc1, Activation::GeluTanh);
  return g.gated_residual(x, linear(g, hidden, w.fc2), gate2);
}

std::vector<float> dit_position_embedding(int64_t width, int64_t rows, int64_t cols) {
  const int64_t quarter = width / 4;
  std::vector<float> table(static_cast<size_t>(rows * cols * width));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float* out = &table[static_cast<size_t>((r * cols + c) * width)];
      for (int64_t half = 0; half < 2; ++half) {
        const double position = static_cast<double>(half == 0 ? c : r);
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

const TensorInfo& require(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* t = file.find(name);
  if (!t) {
    throw Error(file.path() + ": not a DiT checkpoint in the original layout: no tensor '" + name +
                "' (expected x_embedder.proj, t_embedder.mlp.0/2, y_embedder.embedding_table, blocks.N.{attn.qkv, "
                "attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}, final_layer.{linear, adaLN_modulation.1})");
  }
  return *t;
}

DitConfig read_config(const SafetensorsFile& file) {
  const TensorInfo& patch = require(file, "x_embedder.proj.weight");
  if (patch.shape.size() != 4 || patch.shape[2] != patch.shape[3]) {
    throw Error(file.path() + ": x_embedder.proj.weight has shape " + shape_string(patch.shape) +
                ", expected [hidden, channels, patch, patch]");
  }
  DitConfig c;
  c.hidden_size = patch.shape[0];
  c.in_channels = patch.shape[1];
  c.patch_size = patch.shape[2];
  while (file.find("blocks." + std::to_string(c.depth) + ".attn.qkv.weight")) ++c.depth;
  c.mlp_hidden = c.depth ? require(file, "blocks.0.mlp.fc1.weight").shape[0] : 0;
  c.num_classes = require(file, "y_embedder.embedding_table.weight").shape[0] - 1;
  const int64_t outputs = require(file, "final_layer.linear.weight").shape[0];
  c.learn_sigma = outputs == c.patch_size * c.patch_size * 2 * c.in_channels;
  if (const TensorInfo* pos = file.find("pos_embed"); pos && pos->shape.size() == 3) {
    c.input_size = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pos->shape[1])))) * c.patch_size;
  }
  c.num_heads = heads_for_width(c.hidden_size);
  // The file's own config wins where it says more than the shapes (the head count).
  if (const auto it = file.metadata().find("config"); it != file.metadata().end()) {
    const auto json = nlohmann::json::parse(it->second, nullptr, false);
    if (!json.is_object()) throw Error(file.path() + ": metadata 'config' is not a JSON object");
    const auto get = [&](const char* key, int64_t fallback) {
      return json.contains(key) && json[key].is_number_integer() ? json[key].get<int64_t>() : fallback;
    };
    c.num_heads = get("num_heads", c.num_heads);
    c.input_size = get("input_size", c.input_size);
    if (get("hidden_size", c.hidden_size) != c.hidden_size || get("depth", c.depth) != c.depth ||
        get("patch_size", c.patch_size) != c.patch_size || get("in_channels", c.in_channels) != c.in_channels) {
      throw Error(file.path() + ": metadata 'config' disagrees with the tensor shapes (hidden " +
                  std::to_string(c.hidden_size) + ", depth " + std::to_string(c.depth) + ", patch " +
                  std::to_string(c.patch_size) + ", channels " + std::to_string(c.in_channels) + ")");
    }
  }
  if (c.depth == 0 || c.num_heads <= 0 || c.hidden_size % c.num_heads != 0 || c.num_classes < 1 ||
      outputs != c.patch_size * c.patch_size * c.out_channels()) {
    throw Error(file.path() + ": cannot tell this DiT's configuration from its tensors; give a 'config' in the metadata");
  }
  return c;
}

}  // namespace

const float* DitModel::floats(const std::string& name) {
  if (const auto it = floats_.find(name); it != floats_.end()) return it->second.data();
  const TensorInfo& t = require(file_, name);
  if (!is_float_dtype(t.dtype)) {
    throw Error(file_.path() + ": tensor '" + name + "' is " + std::string(dtype_name(t.dtype)) + ", expected floats");
  }
  std::vector<float>& out = floats_[name];
  out.resize(static_cast<size_t>(t.numel()));
  convert_to_f32(t.dtype, file_.data(t).data(), out.data(), out.size());
  return out.data();
}

LinearWeights DitModel::linear_weights(const std::string& prefix) {
  const std::string name = prefix + ".weight";
  const TensorInfo& t = require(file_, name);
  LinearWeights w;
  w.bias = floats(prefix + ".bias");
  const int64_t rows = t.shape.empty() ? 0 : t.shape[0];
  const int64_t cols = rows ? t.numel() / rows : 0;
  if (t.dtype == DType::I8) {
    const TensorInfo* scale = file_.find(scale_tensor_name(name));
    if (!scale) throw Error(file_.path() + ": tensor '" + name + "' is I8 but has no '" + scale_tensor_name(name) + "'");
    const Weight8BitS view{&t, scale, rows, cols};
    floats_[scale->name] = view.load_scales(file_);
    packed_.push_back(accel_.pack({reinterpret_cast<const int8_t*>(file_.data(t).data()),
                                   floats_[scale->name].data(), rows, cols}));
    w.weight = packed_.back().get();
  } else {
    w.float_weight = {floats(name), rows, cols};
  }
  if (require(file_, prefix + ".bias").numel() != rows) {
    throw Error(file_.path() + ": '" + prefix + ".bias' does not have " + std::to_string(rows) + " values");
  }
  return w;
}

DitModel::DitModel(const SafetensorsFile& file, const Accelerator& accel)
    : file_(file), accel_(accel), config_(read_config(file)) {
  find_8bit_s_weights(file);  // validates every 8-bit S pair up front
  patch_embed_ = linear_weights("x_embedder.proj");
  t_mlp0_ = linear_weights("t_embedder.mlp.0");
  t_mlp2_ = linear_weights("t_embedder.mlp.2");
  class_table_ = floats("y_embedder.embedding_table.weight");
  for (int64_t b = 0; b < config_.depth; ++b) {
    const std::string p = "blocks." + std::to_string(b) + ".";
    blocks_.push_back({linear_weights(p + "adaLN_modulation.1"), linear_weights(p + "attn.qkv"),
                       linear_weights(p + "attn.proj"), linear_weights(p + "mlp.fc1"), linear_weights(p + "mlp.fc2")});
  }
  final_ada_ln_ = linear_weights("final_layer.adaLN_modulation.1");
  final_linear_ = linear_weights("final_layer.linear");
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

  const int t_freq = g.timestep_embedding(model->timesteps, t_mlp0_.weight ? t_mlp0_.weight->k() : t_mlp0_.float_weight.k);
  const int t = linear(g, linear(g, t_freq, t_mlp0_, Activation::Silu), t_mlp2_);
  const int y = g.embedding(model->classes, class_table_, c.num_classes + 1, c.hidden_size);
  const int silu_c = g.unary(kernels::Unary::Silu, g.binary(kernels::Binary::Add, t, y));
  for (const DitBlockWeights& block : blocks_) x = dit_block(g, x, silu_c, block, c.num_heads);

  const std::vector<int> final_mod = g.chunk(linear(g, silu_c, final_ada_ln_), 2);  // shift, scale
  const int h = g.modulated_layer_norm(x, final_mod[1], final_mod[0], 1e-6f);
  model->output = g.unpatchify(linear(g, h, final_linear_), c.out_channels(), height, width, c.patch_size);
  g.output(model->output);
  return model;
}

const float* DitModel::position_table(int64_t rows, int64_t cols) const {
  std::lock_guard lock(positions_mutex_);
  auto& table = positions_[{rows, cols}];
  if (table.empty()) {
    // The checkpoint's own table where it has one for this grid (it is the same formula), else computed.
    const TensorInfo* stored = file_.find("pos_embed");
    if (stored && rows == cols && rows * config_.patch_size == config_.input_size &&
        stored->numel() == rows * cols * config_.hidden_size && is_float_dtype(stored->dtype)) {
      table.resize(static_cast<size_t>(stored->numel()));
      convert_to_f32(stored->dtype, file_.data(*stored).data(), table.data(), table.size());
    } else {
      table = dit_position_embedding(config_.hidden_size, rows, cols);
    }
  }
  return table.data();
}

}  // namespace tiledraw::models
