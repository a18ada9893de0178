#include "models/vae.h"


#include "tiledraw/error.h"

namespace tiledraw::models {
namespace {

constexpr float kEps = 1e-6f;
constexpr const char* kExpected =
    "expected diffusers' AutoencoderKL decoder: post_quant_conv, decoder.conv_in, decoder.mid_block.{resnets.0/1, "
    "attentions.0}, decoder.up_blocks.N.{resnets.M, upsamplers.0.conv}, decoder.conv_norm_out, decoder.conv_out; "
    "or the original layout: decoder.mid.{block_1, attn_1, block_2}, decoder.up.N.{block.M, upsample.conv}, "
    "decoder.norm_out";

constexpr const char* kKind = "a VAE decoder";

// The original (LDM) layout of SD checkpoints and of the VAE files most people
// download: its up blocks count from the latent side the other way round.
WeightView::Rename ldm_rename(int64_t levels) {
  const WeightView::Rename rules = rename_by_rules({
      {"decoder.mid_block.resnets.0", {"decoder.mid.block_1"}},
      {"decoder.mid_block.resnets.1", {"decoder.mid.block_2"}},
      {"decoder.mid_block.attentions.0.group_norm", {"decoder.mid.attn_1.norm"}},
      {"decoder.mid_block.attentions.0.to_q", {"decoder.mid.attn_1.q"}},
      {"decoder.mid_block.attentions.0.to_k", {"decoder.mid.attn_1.k"}},
      {"decoder.mid_block.attentions.0.to_v", {"decoder.mid.attn_1.v"}},
      {"decoder.mid_block.attentions.0.to_out.0", {"decoder.mid.attn_1.proj_out"}},
      {"decoder.up_blocks.{}.resnets.{}.conv_shortcut", {"decoder.up.{}.block.{}.nin_shortcut"}},
      {"decoder.up_blocks.{}.resnets.{}", {"decoder.up.{}.block.{}"}},
      {"decoder.up_blocks.{}.upsamplers.0.conv", {"decoder.up.{}.upsample.conv"}},
      {"decoder.conv_norm_out", {"decoder.norm_out"}},
  });
  return [rules, levels](const std::string& canonical) {
    const std::string up = "decoder.up_blocks.";
    if (canonical.rfind(up, 0) != 0) return rules(canonical);
    const size_t dot = canonical.find('.', up.size());
    const std::string index = canonical.substr(up.size(), dot - up.size());
    if (index.empty() || index.size() > 6 || index.find_first_not_of("0123456789") != std::string::npos) return rules(canonical);
    const std::string reversed = std::to_string(levels - 1 - std::stoll(index));
    return rules(up + reversed + (dot == std::string::npos ? "" : canonical.substr(dot)));
  };
}

int64_t ldm_levels(const WeightView& view) {
  int64_t levels = 0;
  while (view.find("decoder.up." + std::to_string(levels) + ".block.0.conv1.weight")) ++levels;
  return levels;
}

// Canonical names are diffusers'.
WeightView canonical_view(const WeightView& view) {
  return vae_in_original_layout(view) ? view.renamed(ldm_rename(ldm_levels(view))) : view;
}

VaeConfig read_config(const WeightView& view) {
  VaeConfig c;
  const auto require = [&](const std::string& name) -> const TensorInfo& { return require_tensor(view, name, kKind, kExpected); };
  const std::string path = view.file().path();
  const TensorInfo& conv_in = require("decoder.conv_in.weight");
  const TensorInfo& conv_out = require("decoder.conv_out.weight");
  if (conv_in.shape.size() != 4 || conv_out.shape.size() != 4) {
    throw Error(path + ": decoder.conv_in and decoder.conv_out must be 4-D convolution weights");
  }
  c.latent_channels = conv_in.shape[1];
  c.out_channels = conv_out.shape[0];
  std::vector<int64_t> from_latent;
  while (const TensorInfo* t = view.find("decoder.up_blocks." + std::to_string(from_latent.size()) + ".resnets.0.conv2.weight")) {
    from_latent.push_back(t->shape.empty() ? 0 : t->shape[0]);
  }
  c.block_out_channels.assign(from_latent.rbegin(), from_latent.rend());
  while (view.find("decoder.up_blocks.0.resnets." + std::to_string(c.layers_per_block + 1) + ".conv1.weight")) {
    ++c.layers_per_block;
  }
  const nlohmann::json& json = view.config();
  if (json.contains("norm_num_groups") && json["norm_num_groups"].is_number_integer()) {
    c.groups = json["norm_num_groups"].get<int64_t>();
  }
  if (json.contains("scaling_factor") && json["scaling_factor"].is_number()) {
    c.scaling_factor = json["scaling_factor"].get<float>();
  }
  if (json.contains("shift_factor") && json["shift_factor"].is_number()) c.shift_factor = json["shift_factor"].get<float>();
  if (c.block_out_channels.empty() || c.groups <= 0) throw Error(path + ": a VAE decoder without up blocks");
  for (const int64_t channels : c.block_out_channels) {
    if (channels <= 0 || channels % c.groups) {
      throw Error(path + ": block width " + std::to_string(channels) + " does not split into " +
                  std::to_string(c.groups) + " groups; give norm_num_groups in a config");
    }
  }
  return c;
}

}  // namespace

bool vae_in_original_layout(const WeightView& view) { return view.find("decoder.mid.block_1.norm1.weight") != nullptr; }

bool holds_vae_decoder(const WeightView& view) {
  return view.find("decoder.conv_in.weight") && view.find("decoder.conv_out.weight") &&
         (view.find("decoder.up_blocks.0.resnets.0.conv1.weight") || view.find("decoder.up.0.block.0.conv1.weight"));
}

VaeDecoder::Norm VaeDecoder::norm(const std::string& prefix) {
  const int64_t channels = weights_.require(prefix + ".weight").numel();
  if (weights_.require(prefix + ".bias").numel() != channels) {
    throw Error(weights_.path() + ": '" + prefix + ".bias' and '" + prefix + ".weight' differ in size");
  }
  return {weights_.floats(prefix + ".weight"), weights_.floats(prefix + ".bias"), channels, prefix};
}

int VaeDecoder::group_norm(runtime::Graph& g, int x, const Norm& n, bool silu) const {
  const int64_t channels = g.values()[static_cast<size_t>(x)].shape[1];
  if (n.channels != channels) {
    throw Error(weights_.path() + ": '" + n.name + ".weight' has " + std::to_string(n.channels) + " values for " +
                std::to_string(channels) + " channels");
  }
  return g.group_norm(x, config_.groups, n.gamma, n.beta, kEps, silu);
}

VaeDecoder::Resnet VaeDecoder::resnet(const std::string& p) {
  Resnet r{norm(p + "norm1"), norm(p + "norm2"), weights_.linear(p + "conv1"), weights_.linear(p + "conv2"), {}};
  if (weights_.view().find(p + "conv_shortcut.weight")) r.shortcut = weights_.linear(p + "conv_shortcut");
  return r;
}

VaeDecoder::VaeDecoder(const WeightView& view, const Accelerator& accel, Precision precision)
    : config_(read_config(canonical_view(view))), weights_(canonical_view(view), accel, precision, kKind, kExpected) {
  post_quant_conv_ = weights_.linear("post_quant_conv");
  conv_in_ = weights_.linear("decoder.conv_in");
  mid_first_ = resnet("decoder.mid_block.resnets.0.");
  mid_second_ = resnet("decoder.mid_block.resnets.1.");
  // Older diffusers files name the attention query/key/value/proj_attn.
  const std::string a = "decoder.mid_block.attentions.0.";
  const bool renamed = weights_.view().find(a + "to_q.weight") != nullptr;
  mid_attention_ = {norm(a + "group_norm"),
                    weights_.linear(renamed ? std::vector<std::string>{a + "to_q", a + "to_k", a + "to_v"}
                                            : std::vector<std::string>{a + "query", a + "key", a + "value"}),
                    weights_.linear(renamed ? a + "to_out.0" : a + "proj_attn")};
  const size_t blocks = config_.block_out_channels.size();
  for (size_t b = 0; b < blocks; ++b) {
    const std::string p = "decoder.up_blocks." + std::to_string(b) + ".";
    up_resnets_.emplace_back();
    for (int64_t r = 0; r <= config_.layers_per_block; ++r) up_resnets_.back().push_back(resnet(p + "resnets." + std::to_string(r) + "."));
    if (b + 1 < blocks) upsamplers_.push_back(weights_.linear(p + "upsamplers.0.conv"));
  }
  norm_out_ = norm("decoder.conv_norm_out");
  conv_out_ = weights_.linear("decoder.conv_out");
}

int VaeDecoder::resnet_graph(runtime::Graph& g, int x, const Resnet& r) const {
  const auto channels = [&](int v) { return g.values()[static_cast<size_t>(v)].shape[1]; };
  int h = group_norm(g, x, r.norm1, true);
  h = conv2d(g, h, r.conv1, 3, 1);
  h = group_norm(g, h, r.norm2, true);
  h = conv2d(g, h, r.conv2, 3, 1);
  const bool reshaped = r.shortcut.weight || r.shortcut.float_weight.data;
  if (!reshaped && channels(x) != channels(h)) {
    throw Error(weights_.path() + ": a resnet changes channels " + std::to_string(channels(x)) + " to " +
                std::to_string(channels(h)) + " without a conv_shortcut");
  }
  return g.binary(kernels::Binary::Add, h, reshaped ? conv2d(g, x, r.shortcut, 1, 0) : x);
}

int VaeDecoder::attention_graph(runtime::Graph& g, int x, const Attention& a) const {
  const std::vector<int64_t> shape = g.values()[static_cast<size_t>(x)].shape;
  const int normed = group_norm(g, x, a.norm, false);
  const int pixels = g.patchify(normed, 1);  // [batch, h w, channels]
  const int attended = g.attention(linear(g, pixels, a.qkv), 1, attention_math(a.qkv));
  const int out = g.unpatchify(linear(g, attended, a.out), shape[1], shape[2], shape[3], 1);
  return g.binary(kernels::Binary::Add, out, x);
}

std::unique_ptr<VaeDecoder::Graph> VaeDecoder::build(int64_t batch, int64_t height, int64_t width) const {
  if (batch <= 0 || height <= 0 || width <= 0) {
    throw Error("VAE input of " + std::to_string(height) + " x " + std::to_string(width) + " latents: must be positive");
  }
  auto model = std::make_unique<Graph>();
  runtime::Graph& g = model->graph;
  model->latents = g.input({batch, config_.latent_channels, height, width});
  int x = conv2d(g, conv2d(g, model->latents, post_quant_conv_, 1, 0), conv_in_, 3, 1);
  x = resnet_graph(g, x, mid_first_);
  x = attention_graph(g, x, mid_attention_);
  x = resnet_graph(g, x, mid_second_);
  for (size_t b = 0; b < up_resnets_.size(); ++b) {
    for (const Resnet& r : up_resnets_[b]) x = resnet_graph(g, x, r);
    if (b < upsamplers_.size()) x = conv2d(g, g.upsample_nearest_2x(x), upsamplers_[b], 3, 1);
  }
  x = group_norm(g, x, norm_out_, true);
  model->image = conv2d(g, x, conv_out_, 3, 1);
  g.output(model->image);
  return model;
}

}  // namespace tiledraw::models
