#include "models/vae.h"

#include "tiledraw/error.h"

namespace tiledraw::models {
namespace {

constexpr float kEps = 1e-6f;
constexpr const char* kExpectedDecoder =
    "expected diffusers' AutoencoderKL decoder: post_quant_conv, decoder.conv_in, decoder.mid_block.{resnets.0/1, "
    "attentions.0}, decoder.up_blocks.N.{resnets.M, upsamplers.0.conv}, decoder.conv_norm_out, decoder.conv_out; "
    "or the original layout: decoder.mid.{block_1, attn_1, block_2}, decoder.up.N.{block.M, upsample.conv}, "
    "decoder.norm_out";
constexpr const char* kExpectedEncoder =
    "expected diffusers' AutoencoderKL encoder: encoder.conv_in, encoder.down_blocks.N.{resnets.M, "
    "downsamplers.0.conv}, encoder.mid_block.{resnets.0/1, attentions.0}, encoder.conv_norm_out, encoder.conv_out, "
    "quant_conv; or the original layout: encoder.down.N.{block.M, downsample.conv}, encoder.mid.{block_1, attn_1, "
    "block_2}, encoder.norm_out";

constexpr const char* kDecoderKind = "a VAE decoder";
constexpr const char* kEncoderKind = "a VAE encoder";

// The original (LDM) layout of SD checkpoints and of the VAE files most people
// download. Its decoder's up blocks count from the latent side the other way
// round; the encoder's down blocks count as diffusers' do.
WeightView::Rename ldm_rename(int64_t decoder_levels) {
  std::vector<RenameRule> rules;
  for (const std::string half : {"encoder", "decoder"}) {
    const std::string mid = half + ".mid_block.", attention = mid + "attentions.0.", ldm_attention = half + ".mid.attn_1.";
    rules.push_back({mid + "resnets.0", {half + ".mid.block_1"}});
    rules.push_back({mid + "resnets.1", {half + ".mid.block_2"}});
    rules.push_back({attention + "group_norm", {ldm_attention + "norm"}});
    rules.push_back({attention + "to_q", {ldm_attention + "q"}});
    rules.push_back({attention + "to_k", {ldm_attention + "k"}});
    rules.push_back({attention + "to_v", {ldm_attention + "v"}});
    rules.push_back({attention + "to_out.0", {ldm_attention + "proj_out"}});
    rules.push_back({half + ".conv_norm_out", {half + ".norm_out"}});
  }
  rules.push_back({"decoder.up_blocks.{}.resnets.{}.conv_shortcut", {"decoder.up.{}.block.{}.nin_shortcut"}});
  rules.push_back({"decoder.up_blocks.{}.resnets.{}", {"decoder.up.{}.block.{}"}});
  rules.push_back({"decoder.up_blocks.{}.upsamplers.0.conv", {"decoder.up.{}.upsample.conv"}});
  rules.push_back({"encoder.down_blocks.{}.resnets.{}.conv_shortcut", {"encoder.down.{}.block.{}.nin_shortcut"}});
  rules.push_back({"encoder.down_blocks.{}.resnets.{}", {"encoder.down.{}.block.{}"}});
  rules.push_back({"encoder.down_blocks.{}.downsamplers.0.conv", {"encoder.down.{}.downsample.conv"}});
  const WeightView::Rename renamed = rename_by_rules(std::move(rules));
  return [renamed, decoder_levels](const std::string& canonical) {
    const std::string up = "decoder.up_blocks.";
    if (canonical.rfind(up, 0) != 0) return renamed(canonical);
    const size_t dot = canonical.find('.', up.size());
    const std::string index = canonical.substr(up.size(), dot - up.size());
    if (index.empty() || index.size() > 6 || index.find_first_not_of("0123456789") != std::string::npos) return renamed(canonical);
    const std::string reversed = std::to_string(decoder_levels - 1 - std::stoll(index));
    return renamed(up + reversed + (dot == std::string::npos ? "" : canonical.substr(dot)));
  };
}

int64_t ldm_decoder_levels(const WeightView& view) {
  int64_t levels = 0;
  while (view.find("decoder.up." + std::to_string(levels) + ".block.0.conv1.weight")) ++levels;
  return levels;
}

// Canonical names are diffusers'.
WeightView canonical_view(const WeightView& view) {
  return vae_in_original_layout(view) ? view.renamed(ldm_rename(ldm_decoder_levels(view))) : view;
}

// What both halves read from the view's config, and the check that every block splits into the groups.
void read_shared_config(const WeightView& view, VaeConfig& c) {
  const nlohmann::json& json = view.config();
  if (json.contains("norm_num_groups") && json["norm_num_groups"].is_number_integer()) {
    c.groups = json["norm_num_groups"].get<int64_t>();
  }
  if (json.contains("scaling_factor") && json["scaling_factor"].is_number()) {
    c.scaling_factor = json["scaling_factor"].get<float>();
  }
  if (json.contains("shift_factor") && json["shift_factor"].is_number()) c.shift_factor = json["shift_factor"].get<float>();
  const std::string path = view.file().path();
  if (c.groups <= 0) throw Error(path + ": norm_num_groups " + std::to_string(c.groups) + " is not positive");
  for (const int64_t channels : c.block_out_channels) {
    if (channels <= 0 || channels % c.groups) {
      throw Error(path + ": block width " + std::to_string(channels) + " does not split into " +
                  std::to_string(c.groups) + " groups; give norm_num_groups in a config");
    }
  }
}

// The first dimension of a 4-D convolution weight, checked.
const TensorInfo& require_conv(const WeightView& view, const std::string& name, const char* kind, const char* expected) {
  const TensorInfo& t = require_tensor(view, name, kind, expected);
  if (t.shape.size() != 4 || t.numel() == 0) {
    throw Error(view.file().path() + ": '" + t.name + "' of shape " + shape_string(t.shape) +
                " is not a convolution weight [out, in, kernel, kernel]");
  }
  return t;
}

VaeConfig read_decoder_config(const WeightView& view) {
  VaeConfig c;
  c.latent_channels = require_conv(view, "decoder.conv_in.weight", kDecoderKind, kExpectedDecoder).shape[1];
  c.out_channels = require_conv(view, "decoder.conv_out.weight", kDecoderKind, kExpectedDecoder).shape[0];
  std::vector<int64_t> from_latent;
  while (const TensorInfo* t = view.find("decoder.up_blocks." + std::to_string(from_latent.size()) + ".resnets.0.conv2.weight")) {
    from_latent.push_back(t->shape.empty() ? 0 : t->shape[0]);
  }
  c.block_out_channels.assign(from_latent.rbegin(), from_latent.rend());
  while (view.find("decoder.up_blocks.0.resnets." + std::to_string(c.layers_per_block + 1) + ".conv1.weight")) {
    ++c.layers_per_block;
  }
  if (c.block_out_channels.empty()) throw Error(view.file().path() + ": a VAE decoder without up blocks");
  read_shared_config(view, c);
  return c;
}

VaeConfig read_encoder_config(const WeightView& view) {
  VaeConfig c;
  const std::string path = view.file().path();
  c.in_channels = require_conv(view, "encoder.conv_in.weight", kEncoderKind, kExpectedEncoder).shape[1];
  const TensorInfo& conv_out = require_conv(view, "encoder.conv_out.weight", kEncoderKind, kExpectedEncoder);
  if (conv_out.shape[0] % 2) {
    throw Error(path + ": '" + conv_out.name + "' has " + std::to_string(conv_out.shape[0]) +
                " outputs, expected an even number (a mean and a log-variance per latent channel)");
  }
  c.latent_channels = conv_out.shape[0] / 2;
  while (const TensorInfo* t = view.find("encoder.down_blocks." + std::to_string(c.block_out_channels.size()) +
                                         ".resnets.0.conv2.weight")) {
    c.block_out_channels.push_back(t->shape.empty() ? 0 : t->shape[0]);
  }
  while (view.find("encoder.down_blocks.0.resnets." + std::to_string(c.layers_per_block) + ".conv1.weight")) {
    ++c.layers_per_block;
  }
  if (c.block_out_channels.empty()) throw Error(path + ": a VAE encoder without down blocks");
  read_shared_config(view, c);
  return c;
}

}  // namespace

bool vae_in_original_layout(const WeightView& view) {
  return view.find("decoder.mid.block_1.norm1.weight") || view.find("encoder.mid.block_1.norm1.weight");
}

bool holds_vae_decoder(const WeightView& view) {
  return view.find("decoder.conv_in.weight") && view.find("decoder.conv_out.weight") &&
         (view.find("decoder.up_blocks.0.resnets.0.conv1.weight") || view.find("decoder.up.0.block.0.conv1.weight"));
}

bool holds_vae_encoder(const WeightView& view) {
  return view.find("encoder.conv_in.weight") && view.find("encoder.conv_out.weight") && view.find("quant_conv.weight") &&
         (view.find("encoder.down_blocks.0.resnets.0.conv1.weight") || view.find("encoder.down.0.block.0.conv1.weight"));
}

VaeLayers::VaeLayers(const WeightView& view, const Accelerator& accel, Precision precision, const std::string& kind,
                     const std::string& expected, int64_t groups)
    : weights_(view, accel, precision, kind, expected), groups_(groups) {}

VaeLayers::Norm VaeLayers::norm(const std::string& prefix) {
  const int64_t channels = weights_.require(prefix + ".weight").numel();
  if (weights_.require(prefix + ".bias").numel() != channels) {
    throw Error(path() + ": '" + prefix + ".bias' and '" + prefix + ".weight' differ in size");
  }
  return {weights_.floats(prefix + ".weight"), weights_.floats(prefix + ".bias"), channels, prefix};
}

VaeLayers::Resnet VaeLayers::resnet(const std::string& p) {
  Resnet r{norm(p + "norm1"), norm(p + "norm2"), weights_.linear(p + "conv1"), weights_.linear(p + "conv2"), {}};
  if (weights_.view().find(p + "conv_shortcut.weight")) r.shortcut = weights_.linear(p + "conv_shortcut");
  return r;
}

VaeLayers::Attention VaeLayers::attention(const std::string& a) {
  // Older diffusers files name the attention query/key/value/proj_attn.
  const bool renamed = weights_.view().find(a + "to_q.weight") != nullptr;
  return {norm(a + "group_norm"),
          weights_.linear(renamed ? std::vector<std::string>{a + "to_q", a + "to_k", a + "to_v"}
                                  : std::vector<std::string>{a + "query", a + "key", a + "value"}),
          weights_.linear(renamed ? a + "to_out.0" : a + "proj_attn")};
}

int VaeLayers::group_norm(runtime::Graph& g, int x, const Norm& n, bool silu) const {
  const int64_t channels = g.values()[static_cast<size_t>(x)].shape[1];
  if (n.channels != channels) {
    throw Error(path() + ": '" + n.name + ".weight' has " + std::to_string(n.channels) + " values for " +
                std::to_string(channels) + " channels");
  }
  return g.group_norm(x, groups_, n.gamma, n.beta, kEps, silu);
}

int VaeLayers::resnet(runtime::Graph& g, int x, const Resnet& r) const {
  const auto channels = [&](int v) { return g.values()[static_cast<size_t>(v)].shape[1]; };
  int h = group_norm(g, x, r.norm1, true);
  h = conv2d(g, h, r.conv1, 3, 1);
  h = group_norm(g, h, r.norm2, true);
  h = conv2d(g, h, r.conv2, 3, 1);
  const bool reshaped = r.shortcut.weight || r.shortcut.float_weight.data;
  if (!reshaped && channels(x) != channels(h)) {
    throw Error(path() + ": a resnet changes channels " + std::to_string(channels(x)) + " to " +
                std::to_string(channels(h)) + " without a conv_shortcut");
  }
  return g.binary(kernels::Binary::Add, h, reshaped ? conv2d(g, x, r.shortcut, 1, 0) : x);
}

int VaeLayers::attention(runtime::Graph& g, int x, const Attention& a) const {
  const std::vector<int64_t> shape = g.values()[static_cast<size_t>(x)].shape;
  const int normed = group_norm(g, x, a.norm, false);
  const int pixels = g.patchify(normed, 1);  // [batch, h w, channels]
  const int attended = g.attention(linear(g, pixels, a.qkv), 1, attention_math(a.qkv));
  const int out = g.unpatchify(linear(g, attended, a.out), shape[1], shape[2], shape[3], 1);
  return g.binary(kernels::Binary::Add, out, x);
}

VaeDecoder::VaeDecoder(const WeightView& view, const Accelerator& accel, Precision precision)
    : config_(read_decoder_config(canonical_view(view))),
      layers_(canonical_view(view), accel, precision, kDecoderKind, kExpectedDecoder, config_.groups) {
  WeightStore& weights = layers_.weights();
  post_quant_conv_ = weights.linear("post_quant_conv");
  conv_in_ = weights.linear("decoder.conv_in");
  mid_first_ = layers_.resnet("decoder.mid_block.resnets.0.");
  mid_attention_ = layers_.attention("decoder.mid_block.attentions.0.");
  mid_second_ = layers_.resnet("decoder.mid_block.resnets.1.");
  const size_t blocks = config_.block_out_channels.size();
  for (size_t b = 0; b < blocks; ++b) {
    const std::string p = "decoder.up_blocks." + std::to_string(b) + ".";
    up_resnets_.emplace_back();
    for (int64_t r = 0; r <= config_.layers_per_block; ++r) {
      up_resnets_.back().push_back(layers_.resnet(p + "resnets." + std::to_string(r) + "."));
    }
    if (b + 1 < blocks) upsamplers_.push_back(weights.linear(p + "upsamplers.0.conv"));
  }
  norm_out_ = layers_.norm("decoder.conv_norm_out");
  conv_out_ = weights.linear("decoder.conv_out");
}

std::unique_ptr<VaeDecoder::Graph> VaeDecoder::build(int64_t batch, int64_t height, int64_t width) const {
  if (batch <= 0 || height <= 0 || width <= 0) {
    throw Error("VAE input of " + std::to_string(height) + " x " + std::to_string(width) + " latents: must be positive");
  }
  auto model = std::make_unique<Graph>();
  runtime::Graph& g = model->graph;
  model->latents = g.input({batch, config_.latent_channels, height, width});
  int x = conv2d(g, conv2d(g, model->latents, post_quant_conv_, 1, 0), conv_in_, 3, 1);
  x = layers_.resnet(g, x, mid_first_);
  x = layers_.attention(g, x, mid_attention_);
  x = layers_.resnet(g, x, mid_second_);
  for (size_t b = 0; b < up_resnets_.size(); ++b) {
    for (const VaeLayers::Resnet& r : up_resnets_[b]) x = layers_.resnet(g, x, r);
    if (b < upsamplers_.size()) x = conv2d(g, g.upsample_nearest_2x(x), upsamplers_[b], 3, 1);
  }
  x = layers_.group_norm(g, x, norm_out_, true);
  model->image = conv2d(g, x, conv_out_, 3, 1);
  g.output(model->image);
  return model;
}

VaeEncoder::VaeEncoder(const WeightView& view, const Accelerator& accel, Precision precision)
    : config_(read_encoder_config(canonical_view(view))),
      layers_(canonical_view(view), accel, precision, kEncoderKind, kExpectedEncoder, config_.groups) {
  WeightStore& weights = layers_.weights();
  conv_in_ = weights.linear("encoder.conv_in");
  const size_t blocks = config_.block_out_channels.size();
  for (size_t b = 0; b < blocks; ++b) {
    const std::string p = "encoder.down_blocks." + std::to_string(b) + ".";
    down_resnets_.emplace_back();
    for (int64_t r = 0; r < config_.layers_per_block; ++r) {
      down_resnets_.back().push_back(layers_.resnet(p + "resnets." + std::to_string(r) + "."));
    }
    if (b + 1 < blocks) downsamplers_.push_back(weights.linear(p + "downsamplers.0.conv"));
  }
  mid_first_ = layers_.resnet("encoder.mid_block.resnets.0.");
  mid_attention_ = layers_.attention("encoder.mid_block.attentions.0.");
  mid_second_ = layers_.resnet("encoder.mid_block.resnets.1.");
  norm_out_ = layers_.norm("encoder.conv_norm_out");
  conv_out_ = weights.linear("encoder.conv_out");
  // The log-variance half of quant_conv's output would be discarded: it is never loaded.
  quant_conv_mean_ = weights.linear_first_rows("quant_conv", config_.latent_channels);
}

std::unique_ptr<VaeEncoder::Graph> VaeEncoder::build(int64_t batch, int64_t height, int64_t width) const {
  const int64_t factor = config_.factor();
  if (batch <= 0 || height <= 0 || width <= 0 || height % factor || width % factor) {
    throw Error("VAE encoder input of " + std::to_string(height) + " x " + std::to_string(width) +
                " pixels: must be positive multiples of " + std::to_string(factor));
  }
  // diffusers pads each down-sampling's input by one row and column after, then a 3x3 stride-2 convolution.
  const runtime::ConvWindow downsampling{3, 2, 0, 1};
  auto model = std::make_unique<Graph>();
  runtime::Graph& g = model->graph;
  model->image = g.input({batch, config_.in_channels, height, width});
  int x = conv2d(g, model->image, conv_in_, 3, 1);
  for (size_t b = 0; b < down_resnets_.size(); ++b) {
    for (const VaeLayers::Resnet& r : down_resnets_[b]) x = layers_.resnet(g, x, r);
    if (b < downsamplers_.size()) x = conv2d(g, x, downsamplers_[b], downsampling);
  }
  x = layers_.resnet(g, x, mid_first_);
  x = layers_.attention(g, x, mid_attention_);
  x = layers_.resnet(g, x, mid_second_);
  x = layers_.group_norm(g, x, norm_out_, true);
  x = conv2d(g, x, conv_out_, 3, 1);
  model->mean = conv2d(g, x, quant_conv_mean_, 1, 0);
  g.output(model->mean);
  return model;
}

}  // namespace tiledraw::models
