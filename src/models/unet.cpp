#include "models/unet.h"

#include <algorithm>
#include <utility>

#include "tiledraw/error.h"

namespace tiledraw::models {
namespace {

constexpr const char* kKind = "a Stable Diffusion UNet";
constexpr const char* kExpected =
    "expected diffusers' UNet2DConditionModel (conv_in, time_embedding.linear_1/2, down_blocks.N.{resnets.M, "
    "attentions.M, downsamplers.0.conv}, mid_block.{resnets.0/1, attentions.0}, up_blocks.N.{resnets.M, attentions.M, "
    "upsamplers.0.conv}, conv_norm_out, conv_out) or the original layout (input_blocks.N.M, middle_block.M, "
    "output_blocks.N.M, time_embed.0/2, out.0/2)";

// The spatial transformer's group norm and its blocks' layer norms (diffusers'
// Transformer2DModel and BasicTransformerBlock defaults).
constexpr float kTransformerGroupNormEps = 1e-6f;
constexpr float kLayerNormEps = 1e-5f;

// A resnet's parts: diffusers' names and the original layout's.
constexpr std::pair<const char*, const char*> kResnetParts[] = {
    {"norm1", "in_layers.0"}, {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
    {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"},
};

std::string at(const std::string& prefix, int64_t index) { return prefix + "." + std::to_string(index); }
std::string down_block(int64_t level) { return at("down_blocks", level); }
std::string up_block(int64_t index) { return at("up_blocks", index); }

// How the original layout numbers its blocks, read from its names: input_blocks
// 1.. hold each level's resnets (with a transformer at .1) and then its
// downsampler (.0.op); output_blocks hold each up block's resnets, the last
// with the upsampler after the resnet (.1) or after the transformer (.2).
struct LdmNumbering {
  int64_t levels = 0, layers_per_block = 0;
  std::vector<bool> up_attention;  // by up block
};

LdmNumbering ldm_numbering(const WeightView& view) {
  LdmNumbering n;
  int64_t resnets = 0, downsamplers = 0;
  for (int64_t i = 1;; ++i) {
    const std::string block = at("input_blocks", i) + ".0.";
    if (view.find(block + "in_layers.0.weight")) {
      ++resnets;
    } else if (view.find(block + "op.weight")) {
      if (downsamplers++ == 0) n.layers_per_block = resnets;
    } else {
      break;
    }
  }
  n.levels = downsamplers + 1;
  if (downsamplers == 0) n.layers_per_block = resnets;
  if (n.layers_per_block <= 0 || resnets != n.levels * n.layers_per_block) {
    throw Error(view.where() + ": not " + std::string(kKind) + ": its input_blocks do not repeat " +
                "resnets and a downsampler per level (" + std::to_string(resnets) + " resnets, " +
                std::to_string(downsamplers) + " downsamplers)");
  }
  for (int64_t u = 0; u < n.levels; ++u) {
    n.up_attention.push_back(view.find(at("output_blocks", u * (n.layers_per_block + 1)) + ".1.norm.weight") != nullptr);
  }
  return n;
}

// Canonical (diffusers) names to the original layout's, one rule per block.
WeightView::Rename ldm_rename(const LdmNumbering& n) {
  std::vector<RenameRule> rules = {
      {"conv_in", {"input_blocks.0.0"}},   {"time_embedding.linear_1", {"time_embed.0"}},
      {"time_embedding.linear_2", {"time_embed.2"}}, {"conv_norm_out", {"out.0"}},
      {"conv_out", {"out.2"}},             {"mid_block.attentions.0", {"middle_block.1"}},
      {"add_embedding.linear_1", {"label_emb.0.0"}}, {"add_embedding.linear_2", {"label_emb.0.2"}},
  };
  const auto resnet = [&](const std::string& diffusers, const std::string& ldm) {
    for (const auto& [part, ldm_part] : kResnetParts) rules.push_back({diffusers + "." + part, {ldm + "." + ldm_part}});
  };
  resnet("mid_block.resnets.0", "middle_block.0");
  resnet("mid_block.resnets.1", "middle_block.2");
  const int64_t per_block = n.layers_per_block + 1;
  for (int64_t level = 0; level < n.levels; ++level) {
    for (int64_t m = 0; m < n.layers_per_block; ++m) {
      const std::string block = at("input_blocks", 1 + level * per_block + m);
      resnet(at(down_block(level) + ".resnets", m), block + ".0");
      rules.push_back({at(down_block(level) + ".attentions", m), {block + ".1"}});
    }
    if (level + 1 < n.levels) {
      rules.push_back({down_block(level) + ".downsamplers.0.conv",
                       {at("input_blocks", 1 + level * per_block + n.layers_per_block) + ".0.op"}});
    }
  }
  for (int64_t u = 0; u < n.levels; ++u) {
    for (int64_t m = 0; m < per_block; ++m) {
      const std::string block = at("output_blocks", u * per_block + m);
      resnet(at(up_block(u) + ".resnets", m), block + ".0");
      rules.push_back({at(up_block(u) + ".attentions", m), {block + ".1"}});
    }
    if (u + 1 < n.levels) {
      const std::string last = at("output_blocks", u * per_block + n.layers_per_block);
      rules.push_back({up_block(u) + ".upsamplers.0.conv", {last + (n.up_attention[static_cast<size_t>(u)] ? ".2.conv" : ".1.conv")}});
    }
  }
  return rename_by_rules(std::move(rules));
}

// The view under canonical names.
WeightView canonical_view(const WeightView& view) {
  return unet_layout(view) == UNetLayout::Original ? view.renamed(ldm_rename(ldm_numbering(view))) : view;
}

// How many of 0, 1, 2, ... are present, counting up to the first that is not.
template <typename Present>
int64_t count_while(const Present& present) {
  int64_t n = 0;
  while (present(n)) ++n;
  return n;
}

// A config entry that is one int for every level or a list of one per level.
std::vector<int64_t> per_level(const nlohmann::json& json, const char* key, std::vector<int64_t> fallback,
                               const std::string& where) {
  if (!json.contains(key) || json[key].is_null()) return fallback;
  const nlohmann::json& value = json[key];
  if (value.is_number_integer()) return std::vector<int64_t>(fallback.size(), value.get<int64_t>());
  std::vector<int64_t> list;
  if (value.is_array()) {
    for (const auto& item : value) {
      if (item.is_number_integer()) list.push_back(item.get<int64_t>());
    }
  }
  if (list.size() != fallback.size() || list.size() != value.size()) {
    throw Error(where + ": config '" + key + "' is " + value.dump() + ", expected an integer or a list of " +
                std::to_string(fallback.size()));
  }
  return list;
}

// Attention per level from a config's block types, listed in block order.
std::vector<bool> attention_of(const nlohmann::json& types, const char* key, size_t levels, const std::string& where) {
  std::vector<bool> attention;
  if (types.is_array()) {
    for (const auto& type : types) {
      const std::string name = type.is_string() ? type.get<std::string>() : "";
      if (name != "CrossAttnDownBlock2D" && name != "DownBlock2D" && name != "CrossAttnUpBlock2D" && name != "UpBlock2D") break;
      attention.push_back(name.rfind("CrossAttn", 0) == 0);
    }
  }
  if (attention.size() != levels || attention.size() != types.size()) {
    throw Error(where + ": config '" + key + "' is " + types.dump() + ", expected " + std::to_string(levels) +
                " of CrossAttnDownBlock2D/DownBlock2D (CrossAttnUpBlock2D/UpBlock2D)");
  }
  return attention;
}

// diffusers options that make a UNet other than SD 1.x/2.x's: each must be
// absent, null or the value given.
void refuse_other_unets(const nlohmann::json& json, const std::string& where) {
  static const std::pair<const char*, nlohmann::json> kAccepted[] = {
      {"class_embed_type", nullptr},
      {"encoder_hid_dim_type", nullptr},     {"time_cond_proj_dim", nullptr},
      {"resnet_time_scale_shift", "default"}, {"time_embedding_type", "positional"},
      {"mid_block_type", "UNetMidBlock2DCrossAttn"}, {"flip_sin_to_cos", true},
      {"only_cross_attention", false},       {"dual_cross_attention", false},
  };
  for (const auto& entry : kAccepted) {
    const char* key = entry.first;
    const nlohmann::json& accepted = entry.second;  // a named reference: lambdas cannot capture bindings in clang 14
    if (!json.contains(key) || json[key].is_null() || json[key] == accepted) continue;
    const bool same_for_every_block = json[key].is_array() &&
        std::all_of(json[key].begin(), json[key].end(), [&](const nlohmann::json& v) { return v == accepted; });
    if (!same_for_every_block) {
      throw Error(where + ": config '" + key + "' = " + json[key].dump() + " is not supported (Stable Diffusion " +
                  "1.x/2.x UNets have " + accepted.dump() + ")");
    }
  }
}

std::string list_string(const std::vector<int64_t>& values) {
  std::string s;
  for (const int64_t v : values) {
    if (!s.empty()) s += '/';
    s += std::to_string(v);
  }
  return s;
}

}  // namespace

std::optional<UNetLayout> unet_layout(const WeightView& view) {
  if (view.find("conv_in.weight") && view.find("time_embedding.linear_1.weight")) return UNetLayout::Diffusers;
  if (view.find("input_blocks.0.0.weight") && view.find("time_embed.0.weight")) return UNetLayout::Original;
  return std::nullopt;
}

bool holds_sd_unet(const WeightView& view) {
  const std::optional<UNetLayout> layout = unet_layout(view);
  if (layout == UNetLayout::Diffusers) {
    return view.find("down_blocks.0.resnets.0.conv1.weight") && !view.find("add_embedding.linear_1.weight");
  }
  return layout == UNetLayout::Original && view.find("middle_block.0.in_layers.0.weight") && !view.find("label_emb.0.0.weight");
}

UNetConfig read_unet_config(const WeightView& stored_view) {
  const std::string where = stored_view.where();
  const std::optional<UNetLayout> layout = unet_layout(stored_view);
  const WeightView view = canonical_view(stored_view);
  const auto require = [&](const std::string& name) -> const TensorInfo& { return require_tensor(view, name, kKind, kExpected); };
  const auto rows = [&](const std::string& name) {
    const TensorInfo& t = require(name);
    return t.shape.empty() ? int64_t{0} : t.shape[0];
  };

  UNetConfig c;
  c.layout = layout.value_or(UNetLayout::Diffusers);
  const TensorInfo& conv_in = require("conv_in.weight");
  const TensorInfo& conv_out = require("conv_out.weight");
  if (conv_in.shape.size() != 4 || conv_out.shape.size() != 4) {
    throw Error(where + ": '" + conv_in.name + "' and '" + conv_out.name + "' must be 4-D convolution weights");
  }
  c.in_channels = conv_in.shape[1];
  c.out_channels = conv_out.shape[0];
  const int64_t levels = count_while([&](int64_t level) { return view.find(down_block(level) + ".resnets.0.conv1.weight") != nullptr; });
  for (int64_t level = 0; level < levels; ++level) c.block_out_channels.push_back(rows(down_block(level) + ".resnets.0.conv1.weight"));
  c.layers_per_block = count_while([&](int64_t m) { return view.find(at(down_block(0) + ".resnets", m) + ".conv1.weight") != nullptr; });
  const std::string mid_transformer = "mid_block.attentions.0";
  const TensorInfo& context_key = require(mid_transformer + ".transformer_blocks.0.attn2.to_k.weight");
  c.cross_attention_dim = context_key.shape.size() == 2 ? context_key.shape[1] : 0;
  c.linear_projection = require(mid_transformer + ".proj_in.weight").shape.size() == 2;
  const bool sd2 = c.cross_attention_dim == 1024 || c.linear_projection;
  if (const TensorInfo* added = view.find("add_embedding.linear_1.weight")) {
    c.addition_input_dim = added->shape.size() == 2 ? added->shape[1] : 0;
    c.addition_time_embed_dim = 256;  // SDXL's
  }
  for (int64_t level = 0; level < levels; ++level) {
    const std::string down_transformer = down_block(level) + ".attentions.0";
    const std::string up_transformer = up_block(levels - 1 - level) + ".attentions.0";
    c.down_attention.push_back(view.find(down_transformer + ".norm.weight") != nullptr);
    c.up_attention.push_back(view.find(up_transformer + ".norm.weight") != nullptr);
    const std::string counted = c.down_attention.back() ? down_transformer
                                : c.up_attention.back() ? up_transformer
                                                        : mid_transformer;
    c.transformer_layers.push_back(std::max<int64_t>(1, count_while([&](int64_t k) {
      return view.find(at(counted + ".transformer_blocks", k) + ".norm1.weight") != nullptr;
    })));
    c.heads.push_back(sd2 ? c.block_out_channels[static_cast<size_t>(level)] / 64 : 8);
  }

  // The config wins where it says more than the shapes; where both say, they must agree.
  const nlohmann::json& json = view.config();
  refuse_other_unets(json, where);
  const auto get = [&](const char* key, int64_t fallback) {
    return json.contains(key) && json[key].is_number_integer() ? json[key].get<int64_t>() : fallback;
  };
  const size_t level_count = static_cast<size_t>(levels);
  if (json.contains("down_block_types")) c.down_attention = attention_of(json["down_block_types"], "down_block_types", level_count, where);
  if (json.contains("up_block_types")) {
    const std::vector<bool> by_up_block = attention_of(json["up_block_types"], "up_block_types", level_count, where);
    c.up_attention.assign(by_up_block.rbegin(), by_up_block.rend());
  }
  // diffusers' quirk: attention_head_dim counts heads unless num_attention_heads is given.
  c.heads = per_level(json, "num_attention_heads", per_level(json, "attention_head_dim", c.heads, where), where);
  c.transformer_layers = per_level(json, "transformer_layers_per_block", c.transformer_layers, where);
  c.norm_groups = get("norm_num_groups", c.norm_groups);
  if (json.contains("norm_eps") && json["norm_eps"].is_number()) c.norm_eps = json["norm_eps"].get<float>();
  c.frequency_shift = get("freq_shift", c.frequency_shift);
  const nlohmann::json added_type = json.contains("addition_embed_type") ? json["addition_embed_type"] : nlohmann::json();
  if (!added_type.is_null() && added_type != "text_time") {
    throw Error(where + ": config 'addition_embed_type' = " + added_type.dump() + " is not supported (SDXL's is \"text_time\")");
  }
  if (added_type == "text_time" && !c.addition_input_dim) {
    throw Error(where + ": the config's addition_embed_type \"text_time\" disagrees with the tensors (no add_embedding)");
  }
  c.addition_time_embed_dim = get("addition_time_embed_dim", c.addition_time_embed_dim);
  if (c.addition_input_dim && (c.addition_time_embed_dim < 2 || c.addition_time_embed_dim % 2 || c.pooled_text_dim() <= 0)) {
    throw Error(where + ": '" + require("add_embedding.linear_1.weight").name + "' reads " + std::to_string(c.addition_input_dim) +
                " values, not a pooled text vector and 6 sizes of " + std::to_string(c.addition_time_embed_dim) +
                " (addition_time_embed_dim, an even number)");
  }
  if (json.contains("use_linear_projection") && json["use_linear_projection"].is_boolean()) {
    c.linear_projection = json["use_linear_projection"].get<bool>();
  }
  const std::vector<int64_t> stated_channels = per_level(json, "block_out_channels", c.block_out_channels, where);
  if (stated_channels != c.block_out_channels || get("in_channels", c.in_channels) != c.in_channels ||
      get("out_channels", c.out_channels) != c.out_channels || get("layers_per_block", c.layers_per_block) != c.layers_per_block ||
      get("cross_attention_dim", c.cross_attention_dim) != c.cross_attention_dim ||
      get("projection_class_embeddings_input_dim", c.addition_input_dim) != c.addition_input_dim) {
    throw Error(where + ": the config disagrees with the tensor shapes (channels " + list_string(c.block_out_channels) +
                ", " + std::to_string(c.layers_per_block) + " resnets per block, in " + std::to_string(c.in_channels) +
                ", out " + std::to_string(c.out_channels) + ", context " + std::to_string(c.cross_attention_dim) + ")");
  }

  if (levels == 0 || c.layers_per_block == 0 || c.in_channels <= 0 || c.out_channels <= 0 || c.cross_attention_dim <= 0 ||
      c.norm_groups <= 0 || c.block_out_channels.front() < 4 || c.block_out_channels.front() % 2 ||
      c.frequency_shift < 0 || c.frequency_shift >= c.block_out_channels.front() / 2) {
    throw Error(where + ": cannot tell this UNet's configuration from its tensors; give a diffusers config");
  }
  for (int64_t level = 0; level < levels; ++level) {
    const size_t l = static_cast<size_t>(level);
    const int64_t channels = c.block_out_channels[l], heads = c.heads[l];
    if (channels <= 0 || channels % c.norm_groups) {
      throw Error(where + ": block width " + std::to_string(channels) + " does not split into " +
                  std::to_string(c.norm_groups) + " groups; give norm_num_groups in a config");
    }
    const bool attends = c.down_attention[l] || c.up_attention[l] || level + 1 == levels;
    if (attends && (heads <= 0 || channels % heads || c.transformer_layers[l] <= 0)) {
      throw Error(where + ": " + std::to_string(heads) + " heads and " + std::to_string(c.transformer_layers[l]) +
                  " transformer layers do not fit block width " + std::to_string(channels) +
                  "; give attention_head_dim (or num_attention_heads) in a config");
    }
  }
  return c;
}

UNetModel::Norm UNetModel::norm(const std::string& prefix, int64_t channels) {
  for (const char* part : {".weight", ".bias"}) require_shape(prefix + part, {channels});
  return {weights_.floats(prefix + ".weight"), weights_.floats(prefix + ".bias")};
}

void UNetModel::require_shape(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo& t = weights_.require(name);
  if (t.shape != shape) {
    throw Error(weights_.path() + ": '" + t.name + "' has shape " + shape_string(t.shape) + ", expected " + shape_string(shape));
  }
}

LinearWeights UNetModel::layer(const std::string& prefix, const std::vector<int64_t>& weight_shape, WeightStore::Bias bias) {
  require_shape(prefix + ".weight", weight_shape);
  return weights_.linear(prefix, bias);
}

UNetModel::Resnet UNetModel::resnet(const std::string& p, int64_t in_channels, int64_t out_channels) {
  Resnet r;
  r.norm1 = norm(p + ".norm1", in_channels);
  r.conv1 = layer(p + ".conv1", {out_channels, in_channels, 3, 3});
  r.time_projection = layer(p + ".time_emb_proj", {out_channels, config_.time_embedding_dim()});
  r.norm2 = norm(p + ".norm2", out_channels);
  r.conv2 = layer(p + ".conv2", {out_channels, out_channels, 3, 3});
  if (in_channels != out_channels) r.shortcut = layer(p + ".conv_shortcut", {out_channels, in_channels, 1, 1});
  return r;
}

UNetModel::SpatialTransformer UNetModel::transformer(const std::string& p, int64_t channels, int64_t heads, int64_t depth) {
  const std::vector<int64_t> projection = config_.linear_projection ? std::vector<int64_t>{channels, channels}
                                                                    : std::vector<int64_t>{channels, channels, 1, 1};
  const std::vector<int64_t> square = {channels, channels}, from_context = {channels, config_.cross_attention_dim};
  constexpr WeightStore::Bias kOptionalBias = WeightStore::Bias::IfStored;
  SpatialTransformer t;
  t.heads = heads;
  t.norm = norm(p + ".norm", channels);
  t.proj_in = layer(p + ".proj_in", projection);
  for (int64_t k = 0; k < depth; ++k) {
    const std::string b = at(p + ".transformer_blocks", k) + ".";
    TransformerBlock block;
    block.norm1 = norm(b + "norm1", channels);
    block.norm2 = norm(b + "norm2", channels);
    block.norm3 = norm(b + "norm3", channels);
    for (const char* part : {"attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight"}) require_shape(b + part, square);
    for (const char* part : {"attn2.to_k.weight", "attn2.to_v.weight"}) require_shape(b + part, from_context);
    block.self_qkv = weights_.linear({b + "attn1.to_q", b + "attn1.to_k", b + "attn1.to_v"}, kOptionalBias);
    block.self_out = layer(b + "attn1.to_out.0", square);
    block.cross_q = layer(b + "attn2.to_q", square, kOptionalBias);
    block.cross_kv = weights_.linear({b + "attn2.to_k", b + "attn2.to_v"}, kOptionalBias);
    block.cross_out = layer(b + "attn2.to_out.0", square);
    block.feed_forward_in = layer(b + "ff.net.0.proj", {8 * channels, channels});
    block.feed_forward_out = layer(b + "ff.net.2", {channels, 4 * channels});
    t.blocks.push_back(std::move(block));
  }
  t.proj_out = layer(p + ".proj_out", projection);
  return t;
}

UNetModel::UNetModel(const WeightView& view, const Accelerator& accel, Precision precision, UNetOptions options)
    : config_(read_unet_config(view)),
      options_(std::move(options)),
      weights_(canonical_view(view), accel, precision, kKind, kExpected) {
  const UNetConfig& c = config_;
  const auto channels_of = [&](int64_t level) { return c.block_out_channels[static_cast<size_t>(level)]; };
  const auto heads_of = [&](int64_t level) { return c.heads[static_cast<size_t>(level)]; };
  const auto depth_of = [&](int64_t level) { return c.transformer_layers[static_cast<size_t>(level)]; };
  const int64_t levels = c.levels(), first = channels_of(0), time_width = c.time_embedding_dim();

  conv_in_ = layer("conv_in", {first, c.in_channels, 3, 3});
  time_linear_1_ = layer("time_embedding.linear_1", {time_width, first});
  time_linear_2_ = layer("time_embedding.linear_2", {time_width, time_width});
  if (c.addition_input_dim) {
    added_linear_1_ = layer("add_embedding.linear_1", {time_width, c.addition_input_dim});
    added_linear_2_ = layer("add_embedding.linear_2", {time_width, time_width});
  }

  // The channels of each skip the down path leaves, popped by the up path in reverse.
  std::vector<int64_t> skips = {first};
  int64_t channels = first;
  for (int64_t level = 0; level < levels; ++level) {
    Block block;
    for (int64_t m = 0; m < c.layers_per_block; ++m) {
      block.resnets.push_back(resnet(at(down_block(level) + ".resnets", m), channels, channels_of(level)));
      channels = channels_of(level);
      if (c.down_attention[static_cast<size_t>(level)]) {
        block.transformers.push_back(
            transformer(at(down_block(level) + ".attentions", m), channels, heads_of(level), depth_of(level)));
      }
      skips.push_back(channels);
    }
    if (level + 1 < levels) {
      block.sampler = layer(down_block(level) + ".downsamplers.0.conv", {channels, channels, 3, 3});
      skips.push_back(channels);
    }
    down_.push_back(std::move(block));
  }
  mid_first_ = resnet("mid_block.resnets.0", channels, channels);
  mid_transformer_ = transformer("mid_block.attentions.0", channels, heads_of(levels - 1), depth_of(levels - 1));
  mid_second_ = resnet("mid_block.resnets.1", channels, channels);
  for (int64_t u = 0; u < levels; ++u) {
    const int64_t level = levels - 1 - u;
    Block block;
    for (int64_t m = 0; m <= c.layers_per_block; ++m) {
      block.resnets.push_back(resnet(at(up_block(u) + ".resnets", m), channels + skips.back(), channels_of(level)));
      skips.pop_back();
      channels = channels_of(level);
      if (c.up_attention[static_cast<size_t>(level)]) {
        block.transformers.push_back(transformer(at(up_block(u) + ".attentions", m), channels, heads_of(level), depth_of(level)));
      }
    }
    if (level > 0) block.sampler = layer(up_block(u) + ".upsamplers.0.conv", {channels, channels, 3, 3});
    up_.push_back(std::move(block));
  }
  norm_out_ = norm("conv_norm_out", first);
  conv_out_ = layer("conv_out", {c.out_channels, first, 3, 3});

  // Adapters name layers in either layout (kohya-ss's SDXL ones in the
  // original's): a diffusers UNet's parts go by the original names too, as an
  // original one's go by the canonical (diffusers) names already.
  layer_parts_ = weights_.layer_parts();
  if (c.layout == UNetLayout::Diffusers) {
    LdmNumbering numbering{levels, c.layers_per_block, {}};
    for (int64_t u = 0; u < levels; ++u) numbering.up_attention.push_back(c.up_attention[static_cast<size_t>(levels - 1 - u)]);
    const WeightView::Rename original = ldm_rename(numbering);
    for (LayerPart& part : layer_parts_) {
      for (const std::string& name : original(part.names.front() + ".weight")) {
        const std::string module = name.substr(0, name.size() - std::string(".weight").size());
        if (module != part.names.front()) part.names.push_back(module);
      }
    }
  }
}

std::string UNetModel::description() const {
  if (!options_.description.empty()) return options_.description;
  const UNetConfig& c = config_;
  return std::string("Stable Diffusion UNet (") + (c.layout == UNetLayout::Original ? "original" : "diffusers") +
         " layout), channels " + list_string(c.block_out_channels) + ", " + std::to_string(c.layers_per_block) +
         " resnets per block, heads " + list_string(c.heads) + ", context " + std::to_string(c.cross_attention_dim) +
         (c.linear_projection ? ", linear projections" : ", convolution projections");
}

int UNetModel::resnet_graph(runtime::Graph& g, int x, int silu_time, const Resnet& r) const {
  int h = g.group_norm(x, config_.norm_groups, r.norm1.gamma, r.norm1.beta, config_.norm_eps, true);
  h = conv2d(g, h, r.conv1, 3, 1);
  h = g.add_per_channel(h, linear(g, silu_time, r.time_projection));
  h = g.group_norm(h, config_.norm_groups, r.norm2.gamma, r.norm2.beta, config_.norm_eps, true);
  h = conv2d(g, h, r.conv2, 3, 1);
  return g.binary(kernels::Binary::Add, h, r.shortcut ? conv2d(g, x, *r.shortcut, 1, 0) : x);
}

int UNetModel::transformer_graph(runtime::Graph& g, int x, int context, const SpatialTransformer& t) const {
  const std::vector<int64_t> shape = g.values()[static_cast<size_t>(x)].shape;  // [batch, channels, h, w]
  const int64_t channels = shape[1];
  const auto add = [&](int a, int b) { return g.binary(kernels::Binary::Add, a, b); };
  const auto layer_norm = [&](int v, const Norm& n) { return g.layer_norm(v, n.gamma, n.beta, kLayerNormEps); };
  // A 1x1 convolution over the pixels is the same linear layer over the tokens.
  const int normed = g.group_norm(x, config_.norm_groups, t.norm.gamma, t.norm.beta, kTransformerGroupNormEps, false);
  int tokens = linear(g, g.patchify(normed, 1), t.proj_in);
  for (const TransformerBlock& b : t.blocks) {
    const int self = g.attention(linear(g, layer_norm(tokens, b.norm1), b.self_qkv), t.heads, attention_math(b.self_qkv));
    tokens = add(tokens, linear(g, self, b.self_out));
    const int query = linear(g, layer_norm(tokens, b.norm2), b.cross_q);
    const int keys_values = linear(g, context, b.cross_kv);
    const int cross = g.attention(query, g.slice(keys_values, 0, channels), g.slice(keys_values, channels, channels),
                                  t.heads, attention_math(b.cross_kv));
    tokens = add(tokens, linear(g, cross, b.cross_out));
    const int hidden = g.geglu(linear(g, layer_norm(tokens, b.norm3), b.feed_forward_in));
    tokens = add(tokens, linear(g, hidden, b.feed_forward_out));
  }
  return add(g.unpatchify(linear(g, tokens, t.proj_out), channels, shape[2], shape[3], 1), x);
}

std::unique_ptr<ModelGraph> UNetModel::build(const GraphShape& shape) const {
  const UNetConfig& c = config_;
  const int64_t multiple = latent_multiple();
  if (shape.batch <= 0 || shape.height <= 0 || shape.width <= 0 || shape.height % multiple || shape.width % multiple ||
      shape.context_tokens <= 0) {
    throw Error("UNet input of " + std::to_string(shape.height) + " x " + std::to_string(shape.width) + " latents and " +
                std::to_string(shape.context_tokens) + " context tokens: height and width must be positive multiples of " +
                std::to_string(multiple) + ", and the context must have tokens");
  }
  auto model = std::make_unique<ModelGraph>();
  runtime::Graph& g = model->graph;
  g.set_adapters(shape.adapters);
  const int latents = g.input({shape.batch, c.in_channels, shape.height, shape.width});
  const int timesteps = g.input({shape.batch});
  const int context = g.input({shape.batch, shape.context_tokens, c.cross_attention_dim});
  model->inputs = {{InputRole::Latents, latents}, {InputRole::Timestep, timesteps}, {InputRole::TextContext, context}};

  const int frequencies = g.timestep_embedding(timesteps, c.block_out_channels.front(), c.frequency_shift);
  int time = linear(g, linear(g, frequencies, time_linear_1_, Activation::Silu), time_linear_2_);
  if (c.addition_input_dim) {
    // SDXL: [pooled text, a sinusoid of each size] through add_embedding, added to the time embedding.
    const int64_t pooled_width = c.pooled_text_dim(), sizes_width = 6 * c.addition_time_embed_dim;
    const int pooled = g.input({shape.batch, pooled_width});
    const int sizes = g.input({shape.batch, 6});
    model->inputs.push_back({InputRole::PooledText, pooled});
    model->inputs.push_back({InputRole::ExtraVector, sizes});
    const int size_frequencies = g.timestep_embedding(g.reshape(sizes, {shape.batch * 6}), c.addition_time_embed_dim);
    const int added = g.concat_channels(g.reshape(pooled, {shape.batch, pooled_width, 1, 1}),
                                        g.reshape(size_frequencies, {shape.batch, sizes_width, 1, 1}));
    const int embedded = linear(g, linear(g, g.reshape(added, {shape.batch, c.addition_input_dim}), *added_linear_1_, Activation::Silu),
                                *added_linear_2_);
    time = g.binary(kernels::Binary::Add, time, embedded);
  }
  const int silu_time = g.unary(kernels::Unary::Silu, time);  // what every resnet's projection reads

  int x = conv2d(g, latents, conv_in_, 3, 1);
  std::vector<int> skips = {x};
  for (const Block& block : down_) {
    for (size_t m = 0; m < block.resnets.size(); ++m) {
      x = resnet_graph(g, x, silu_time, block.resnets[m]);
      if (!block.transformers.empty()) x = transformer_graph(g, x, context, block.transformers[m]);
      skips.push_back(x);
    }
    if (block.sampler) {
      x = conv2d(g, x, *block.sampler, runtime::ConvWindow::square(3, 2, 1));
      skips.push_back(x);
    }
  }
  x = resnet_graph(g, x, silu_time, mid_first_);
  x = transformer_graph(g, x, context, mid_transformer_);
  x = resnet_graph(g, x, silu_time, mid_second_);
  for (const Block& block : up_) {
    for (size_t m = 0; m < block.resnets.size(); ++m) {
      x = resnet_graph(g, g.concat_channels(x, skips.back()), silu_time, block.resnets[m]);
      skips.pop_back();
      if (!block.transformers.empty()) x = transformer_graph(g, x, context, block.transformers[m]);
    }
    if (block.sampler) x = conv2d(g, g.upsample_nearest_2x(x), *block.sampler, 3, 1);
  }
  x = g.group_norm(x, c.norm_groups, norm_out_.gamma, norm_out_.beta, c.norm_eps, true);
  model->output = conv2d(g, x, conv_out_, 3, 1);
  g.output(model->output);
  return model;
}

}  // namespace tiledraw::models
