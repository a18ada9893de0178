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
    "attn1.to_q/to_k/to_v, attn1.to_out.0, ff.net.0.proj, ff.net.2}, proj_out_1, proj_out_2)";

constexpr const char* kKind = "a DiT checkpoint";

// The canonical names are the original repository's, with the timestep and
// class embedders named per block ("blocks.N.t_embedder"), since diffusers
// stores one pair in every block; the original's single pair serves them all.
WeightView::Rename layout_rename(DitLayout layout) {
  if (layout == DitLayout::Original) {
    return rename_by_rules({{"blocks.{}.t_embedder", {"t_embedder"}}, {"blocks.{}.y_embedder", {"y_embedder"}}});
  }
  const std::string b = "transformer_blocks.{}.";
  return rename_by_rules({
      {"x_embedder.proj", {"pos_embed.proj"}},
      {"blocks.{}.t_embedder.mlp.0", {b + "norm1.emb.timestep_embedder.linear_1"}},
      {"blocks.{}.t_embedder.mlp.2", {b + "norm1.emb.timestep_embedder.linear_2"}},
      {"blocks.{}.y_embedder.embedding_table", {b + "norm1.emb.class_embedder.embedding_table"}},
      {"blocks.{}.adaLN_modulation.1", {b + "norm1.linear"}},
      {"blocks.{}.attn.qkv", {b + "attn1.to_q", b + "attn1.to_k", b + "attn1.to_v"}},
      {"blocks.{}.attn.proj", {b + "attn1.to_out.0"}},
      {"blocks.{}.mlp.fc1", {b + "ff.net.0.proj"}},
      {"blocks.{}.mlp.fc2", {b + "ff.net.2"}},
      {"final_layer.adaLN_modulation.1", {"proj_out_1"}},
      {"final_layer.linear", {"proj_out_2"}},
      {"pos_embed", {}},  // diffusers computes the table
  });
}

std::string block(int64_t b, const char* part) { return "blocks." + std::to_string(b) + "." + part; }

// Blocks in canonical names, counted while their MLP is there.
int64_t count_blocks(const WeightView& view) {
  int64_t depth = 0;
  while (view.find(block(depth, "mlp.fc1.weight"))) ++depth;
  return depth;
}

DitConfig read_config(const WeightView& view, DitLayout layout) {
  const auto require = [&](const std::string& name) -> const TensorInfo& {
    return require_tensor(view, name, kKind, kExpectedLayouts);
  };
  DitConfig c;
  c.layout = layout;
  const std::string path = view.file().path();
  const TensorInfo& patch = require("x_embedder.proj.weight");
  if (patch.shape.size() != 4 || patch.shape[2] != patch.shape[3] || patch.numel() == 0) {
    throw Error(path + ": " + patch.name + " has shape " + shape_string(patch.shape) +
                ", expected [hidden, channels, patch, patch]");
  }
  c.hidden_size = patch.shape[0];
  c.in_channels = patch.shape[1];
  c.patch_size = patch.shape[2];
  c.depth = count_blocks(view);
  // A tensor's first dimension, 0 for a scalar (the checks below and the loading then refuse it).
  const auto rows = [&](const std::string& name) {
    const TensorInfo& t = require(name);
    return t.shape.empty() ? int64_t{0} : t.shape[0];
  };
  c.mlp_hidden = c.depth ? rows(block(0, "mlp.fc1.weight")) : 0;
  c.num_classes = rows(block(0, "y_embedder.embedding_table.weight")) - 1;
  const int64_t outputs = rows("final_layer.linear.weight");
  c.learn_sigma = outputs == c.patch_size * c.patch_size * 2 * c.in_channels;
  if (const TensorInfo* pos = view.find("pos_embed"); pos && pos->shape.size() == 3) {
    c.input_size = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pos->shape[1])))) * c.patch_size;
  }
  c.num_heads = heads_for_width(c.hidden_size);
  if (layout == DitLayout::Diffusers) {
    c.frequency_shift = 1;
    c.mlp_norm_eps = 1e-5f;
  }
  // The config wins where it says more than the shapes (heads, trained size, epsilon).
  const nlohmann::json& json = view.config();
  const auto get = [&](const char* key, int64_t fallback) {
    return json.contains(key) && json[key].is_number_integer() ? json[key].get<int64_t>() : fallback;
  };
  c.num_heads = get("num_heads", get("num_attention_heads", c.num_heads));
  c.input_size = get("input_size", get("sample_size", c.input_size));
  if (json.contains("norm_eps") && json["norm_eps"].is_number()) c.mlp_norm_eps = json["norm_eps"].get<float>();
  if (get("hidden_size", c.hidden_size) != c.hidden_size || get("depth", get("num_layers", c.depth)) != c.depth ||
      get("patch_size", c.patch_size) != c.patch_size || get("in_channels", c.in_channels) != c.in_channels) {
    throw Error(path + ": the config disagrees with the tensor shapes (hidden " + std::to_string(c.hidden_size) +
                ", depth " + std::to_string(c.depth) + ", patch " + std::to_string(c.patch_size) + ", channels " +
                std::to_string(c.in_channels) + ")");
  }
  if (c.depth == 0 || c.num_heads <= 0 || c.hidden_size % c.num_heads != 0 || c.num_classes < 1 ||
      outputs != c.patch_size * c.patch_size * c.out_channels()) {
    throw Error(path + ": cannot tell this DiT's configuration from its tensors; give a 'config' in the metadata");
  }
  return c;
}

// Whether two canonical names hold the same bytes (the original layout names
// one shared tensor for every block).
bool same_bytes(const WeightView& view, const std::string& a, const std::string& b) {
  const TensorInfo* x = view.find(a);
  const TensorInfo* y = view.find(b);
  if (x == y) return x != nullptr;
  if (!x || !y || x->dtype != y->dtype || x->shape != y->shape) return false;
  const auto bx = view.file().data(*x), by = view.file().data(*y);
  return bx.size() == by.size() && std::equal(bx.begin(), bx.end(), by.begin());
}

}  // namespace

std::optional<DitLayout> dit_layout(const WeightView& view) {
  if (view.find("x_embedder.proj.weight")) return DitLayout::Original;
  if (view.find("pos_embed.proj.weight")) return DitLayout::Diffusers;
  return std::nullopt;
}

namespace {

WeightView layout_view(const WeightView& view) {
  return view.renamed(layout_rename(dit_layout(view).value_or(DitLayout::Original)));
}

}  // namespace

int64_t dit_depth(const WeightView& view) { return count_blocks(layout_view(view)); }

bool holds_dit(const WeightView& view) {
  // diffusers' patch embedding name is shared by other transformers; its final layer and class table are not.
  const std::optional<DitLayout> layout = dit_layout(view);
  return layout == DitLayout::Original ||
         (layout && (layout_view(view).find("final_layer.linear.weight") ||
                     layout_view(view).find(block(0, "y_embedder.embedding_table.weight"))));
}

DitModel::Conditioning DitModel::conditioning(int64_t b) {
  // The embedding op reads rows of hidden_size floats for ids up to num_classes.
  const std::string table = block(b, "y_embedder.embedding_table.weight");
  const std::vector<int64_t> expected = {config_.num_classes + 1, config_.hidden_size};
  if (weights_.require(table).shape != expected) {
    throw Error(weights_.path() + ": '" + weights_.require(table).name + "' has shape " +
                shape_string(weights_.require(table).shape) + ", expected " + shape_string(expected));
  }
  return {weights_.linear(block(b, "t_embedder.mlp.0")), weights_.linear(block(b, "t_embedder.mlp.2")), weights_.floats(table)};
}

DitModel::DitModel(const WeightView& view, const Accelerator& accel, Precision precision, sampling::NoiseSchedule schedule)
    : config_(read_config(layout_view(view), dit_layout(view).value_or(DitLayout::Original))),
      weights_(layout_view(view), accel, precision, kKind, kExpectedLayouts),
      schedule_(schedule),
      class_names_(models::class_names(view.file())) {
  const WeightView& names = weights_.view();
  patch_embed_ = weights_.linear("x_embedder.proj");
  conditionings_.push_back(conditioning(0));
  for (int64_t b = 0; b < config_.depth; ++b) {
    const auto part = [&](const char* name) { return weights_.linear(block(b, name)); };
    blocks_.push_back({part("adaLN_modulation.1"), part("attn.qkv"), part("attn.proj"), part("mlp.fc1"), part("mlp.fc2")});
    bool shared = true;
    for (const char* name : {"t_embedder.mlp.0.weight", "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight",
                             "t_embedder.mlp.2.bias", "y_embedder.embedding_table.weight"}) {
      shared = shared && same_bytes(names, block(0, name), block(b, name));
    }
    if (!shared) conditionings_.push_back(conditioning(b));
    block_conditioning_.push_back(shared ? 0 : conditionings_.size() - 1);
  }
  final_ada_ln_ = weights_.linear("final_layer.adaLN_modulation.1");
  final_linear_ = weights_.linear("final_layer.linear");
}

std::string DitModel::description() const {
  return std::string("DiT (") + (config_.layout == DitLayout::Original ? "original" : "diffusers") + " layout), " +
         std::to_string(config_.depth) + " blocks of width " + std::to_string(config_.hidden_size) + ", patch " +
         std::to_string(config_.patch_size) + ", " + std::to_string(config_.num_classes) + " classes";
}

LatentFormat DitModel::latent_format() const {
  if (config_.in_channels == 4) return {4, 8, 0.18215, 0.0};
  return {config_.in_channels, 1, 1.0, 0.0};
}

void DitModel::guide(float* cond, const float* uncond, int64_t images, int64_t plane, double scale) const {
  // Only the first three channels are guided; the others keep the conditional
  // branch's values (DiT's forward_with_cfg).
  const int64_t per_image = config_.in_channels * plane, guided = std::min<int64_t>(3, config_.in_channels) * plane;
  for (int64_t b = 0; b < images; ++b) {
    for (int64_t i = 0; i < guided; ++i) {
      float& c = cond[b * per_image + i];
      const double u = uncond[b * per_image + i];
      c = static_cast<float>(u + scale * (c - u));
    }
  }
}

int DitModel::conditioning_graph(runtime::Graph& g, const Conditioning& c, int timesteps, int classes) const {
  const int t_freq = g.timestep_embedding(timesteps, c.t_mlp0.in_features(), config_.frequency_shift);
  const int t = linear(g, linear(g, t_freq, c.t_mlp0, Activation::Silu), c.t_mlp2);
  const int y = g.embedding(classes, {c.class_table, DType::F32}, config_.num_classes + 1, config_.hidden_size);
  return g.unary(kernels::Unary::Silu, g.binary(kernels::Binary::Add, t, y));
}

std::unique_ptr<ModelGraph> DitModel::build(const GraphShape& shape) const {
  const DitConfig& c = config_;
  const int64_t batch = shape.batch, height = shape.height, width = shape.width;
  if (batch <= 0 || height <= 0 || width <= 0 || height % c.patch_size || width % c.patch_size) {
    throw Error("DiT input of " + std::to_string(height) + " x " + std::to_string(width) +
                " latents: height and width must be positive multiples of the patch size " +
                std::to_string(c.patch_size));
  }
  const int64_t rows = height / c.patch_size, cols = width / c.patch_size, tokens = rows * cols;
  const float* positions = position_table(rows, cols);

  auto model = std::make_unique<ModelGraph>();
  runtime::Graph& g = model->graph;
  const int latents = g.input({batch, c.in_channels, height, width});
  const int timesteps = g.input({batch});
  const int classes = g.input({batch});
  model->inputs = {{InputRole::Latents, latents}, {InputRole::Timestep, timesteps}, {InputRole::ClassLabels, classes}};
  int x = linear(g, g.patchify(latents, c.patch_size), patch_embed_);
  const int flat = g.binary(kernels::Binary::Add, g.reshape(x, {batch, tokens * c.hidden_size}),
                            g.constant({tokens * c.hidden_size}, positions));
  x = g.reshape(flat, {batch, tokens, c.hidden_size});

  std::vector<int> silu_c;
  for (const Conditioning& cond : conditionings_) silu_c.push_back(conditioning_graph(g, cond, timesteps, classes));
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
    const TensorInfo* stored = weights_.view().find("pos_embed");
    if (stored && rows == cols && rows * config_.patch_size == config_.input_size &&
        stored->numel() == rows * cols * config_.hidden_size && is_float_dtype(stored->dtype)) {
      table.resize(static_cast<size_t>(stored->numel()));
      convert_to_f32(stored->dtype, weights_.view().file().data(*stored).data(), table.data(), table.size());
    } else {
      const int64_t trained = config_.input_size / config_.patch_size;
      table = dit_position_embedding(config_.hidden_size, rows, cols, trained, trained);
    }
  }
  return table.data();
}

}  // namespace tiledraw::models
