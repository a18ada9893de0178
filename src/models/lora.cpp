#include "models/lora.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "tiledraw/dtype.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"
#include "tiledraw/safetensors.h"

namespace tiledraw::models {
namespace {

// How files name a layer's two factors: the down projection (to the rank)
// and the up projection (back to the layer's width).
struct FactorNames {
  const char* down;
  const char* up;
};
constexpr FactorNames kFactorNames[] = {
    {".lora_down.weight", ".lora_up.weight"},                          // kohya-ss, A1111
    {".lora_A.weight", ".lora_B.weight"},                              // PEFT
    {".lora.down.weight", ".lora.up.weight"},                          // diffusers' training scripts
    {".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"},  // diffusers' text encoder LoRAs
    {"_lora.down.weight", "_lora.up.weight"},                          // diffusers' attention processors (2023)
};

// Keys (or the start of keys: lokr_w1 and lokr_w1_a) of adapter kinds not run.
constexpr std::pair<const char*, const char*> kOtherKinds[] = {
    {".hada_t1", "LoHa with Tucker factors (hada_t1)"},
    {".lokr_w1", "LoKr"},
    {".dora_scale", "DoRA"},
    {".lora_mid.weight", "LoCon with a Tucker middle factor (lora_mid)"},
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string flattened(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

// The component and module path of a layer's key (without its factor's suffix).
std::pair<LoraComponent, std::string> locate(std::string key, const std::string& path) {
  if (starts_with(key, "base_model.model.")) key.erase(0, std::string("base_model.model.").size());  // PEFT's save_pretrained
  static const std::pair<const char*, LoraComponent> kPrefixes[] = {
      {"lora_unet_", LoraComponent::Unet},          {"lora_te2_", LoraComponent::TextEncoder2},
      {"lora_te1_", LoraComponent::TextEncoder},    {"lora_te_", LoraComponent::TextEncoder},
      {"unet.", LoraComponent::Unet},               {"text_encoder_2.", LoraComponent::TextEncoder2},
      {"text_encoder.", LoraComponent::TextEncoder},
  };
  for (const auto& [prefix, component] : kPrefixes) {
    if (starts_with(key, prefix)) return {component, flattened(key.substr(std::string(prefix).size()))};
  }
  // diffusers' attention processors named UNet modules bare, with ".processor."
  // before the projection and to_out for to_out.0.
  for (const char* block : {"down_blocks.", "mid_block.", "up_blocks."}) {
    if (!starts_with(key, block)) continue;
    if (const size_t at = key.find(".processor."); at != std::string::npos) key.erase(at, std::string(".processor").size());
    if (ends_with(key, ".to_out")) key += ".0";
    return {LoraComponent::Unet, flattened(key)};
  }
  throw Error(path + ": '" + key + "' is not a layer of a Stable Diffusion UNet or text encoder (expected lora_unet_*, "
              "lora_te_*, lora_te1_*, lora_te2_*, unet.*, text_encoder.* or text_encoder_2.*)");
}

std::vector<float> floats_of(const SafetensorsFile& file, const TensorInfo& t) {
  if (!is_float_dtype(t.dtype)) {
    throw Error(file.path() + ": '" + t.name + "' is " + std::string(dtype_name(t.dtype)) + ", expected floats");
  }
  std::vector<float> out(static_cast<size_t>(t.numel()));
  convert_to_f32(t.dtype, file.data(t).data(), out.data(), out.size());
  if (!std::all_of(out.begin(), out.end(), [](float v) { return std::isfinite(v); })) {
    throw Error(file.path() + ": '" + t.name + "' holds a value that is not finite");
  }
  return out;
}

// The alpha beside a layer's factors as a scale: alpha / dim, or 1 without
// one (kohya-ss reads an alpha of 0 as none too).
float alpha_scale(const SafetensorsFile& file, const std::string& key, int64_t dim, std::set<std::string>& used) {
  const TensorInfo* alpha = file.find(key + ".alpha");
  if (!alpha) return 1.0f;
  if (alpha->numel() != 1) throw Error(file.path() + ": '" + alpha->name + "' is not one value");
  used.insert(alpha->name);
  const float value = floats_of(file, *alpha).front();
  return value != 0.0f ? value / static_cast<float>(dim) : 1.0f;
}

// LyCORIS's LoHa: dW = (w1_a w1_b) * (w2_a w2_b) elementwise, times alpha /
// dim (dim: w1_b's rows). The elementwise product of two rank-r products is
// one product of rank r1 x r2, down[(a, b), i] = w1_b[a, i] w2_b[b, i] and
// up[o, (a, b)] = w1_a[o, a] w2_a[o, b], which runs like any LoRA layer;
// when r1 x r2 is not below the layer's own rank, the update is built whole.
LoraLayer read_loha(const SafetensorsFile& file, const std::string& key, std::set<std::string>& used) {
  const auto factor = [&](const char* suffix) -> const TensorInfo& {
    const TensorInfo* t = file.find(key + suffix);
    if (!t) throw Error(file.path() + ": '" + key + ".hada_w1_a' has no '" + key + suffix + "'");
    used.insert(t->name);
    return *t;
  };
  const TensorInfo& w1a = factor(".hada_w1_a");
  const TensorInfo& w1b = factor(".hada_w1_b");
  const TensorInfo& w2a = factor(".hada_w2_a");
  const TensorInfo& w2b = factor(".hada_w2_b");
  const int64_t out = w1a.shape.size() == 2 ? w1a.shape[0] : 0, r1 = out ? w1a.shape[1] : 0;
  const int64_t r2 = w2a.shape.size() == 2 && w2a.shape[0] == out ? w2a.shape[1] : 0;
  const int64_t in = r1 && !w1b.shape.empty() && w1b.shape[0] == r1 ? w1b.numel() / r1 : 0;
  if (out <= 0 || r1 <= 0 || r2 <= 0 || in <= 0 || w2b.shape.empty() || w2b.shape[0] != r2 || w2b.numel() != r2 * in) {
    throw Error(file.path() + ": the LoHa factors of '" + key + "' do not chain: hada_w1_a " + shape_string(w1a.shape) +
                ", hada_w1_b " + shape_string(w1b.shape) + ", hada_w2_a " + shape_string(w2a.shape) + ", hada_w2_b " +
                shape_string(w2b.shape) + " (expected [out, r1], [r1, in], [out, r2], [r2, in])");
  }
  const std::vector<float> a1 = floats_of(file, w1a), b1 = floats_of(file, w1b), a2 = floats_of(file, w2a),
                           b2 = floats_of(file, w2b);
  LoraLayer layer;
  layer.in = in;
  layer.out = out;
  layer.scale = alpha_scale(file, key, r1, used);
  if (r1 * r2 >= std::min(in, out)) {
    // No lower rank than the layer's own: the update itself, as a product
    // with an identity (memory bounded by the layer, not by r1 x r2).
    std::vector<float> update(static_cast<size_t>(out * in));
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) {
        float first = 0.0f, second = 0.0f;
        for (int64_t a = 0; a < r1; ++a) first += a1[static_cast<size_t>(o * r1 + a)] * b1[static_cast<size_t>(a * in + i)];
        for (int64_t b = 0; b < r2; ++b) second += a2[static_cast<size_t>(o * r2 + b)] * b2[static_cast<size_t>(b * in + i)];
        update[static_cast<size_t>(o * in + i)] = first * second;
      }
    }
    layer.rank = std::min(in, out);
    std::vector<float> identity(static_cast<size_t>(layer.rank * layer.rank), 0.0f);
    for (int64_t r = 0; r < layer.rank; ++r) identity[static_cast<size_t>(r * layer.rank + r)] = 1.0f;
    layer.down = in <= out ? std::move(identity) : std::move(update);
    layer.up = in <= out ? std::move(update) : std::move(identity);
    return layer;
  }
  layer.rank = r1 * r2;
  layer.down.resize(static_cast<size_t>(layer.rank * in));
  layer.up.resize(static_cast<size_t>(out * layer.rank));
  for (int64_t a = 0; a < r1; ++a) {
    for (int64_t b = 0; b < r2; ++b) {
      for (int64_t i = 0; i < in; ++i) {
        layer.down[static_cast<size_t>((a * r2 + b) * in + i)] = b1[static_cast<size_t>(a * in + i)] * b2[static_cast<size_t>(b * in + i)];
      }
      for (int64_t o = 0; o < out; ++o) {
        layer.up[static_cast<size_t>(o * layer.rank + a * r2 + b)] = a1[static_cast<size_t>(o * r1 + a)] * a2[static_cast<size_t>(o * r2 + b)];
      }
    }
  }
  return layer;
}

}  // namespace

LoraFile read_lora(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  LoraFile out{path, {}};
  std::set<std::string> used;
  for (const TensorInfo& t : file.tensors()) {
    for (const auto& [marker, kind] : kOtherKinds) {
      if (t.name.find(marker) != std::string::npos) {
        throw Error(path + ": '" + t.name + "' is part of a " + kind + " adapter; tiledraw runs LoRA (lora_down/lora_up, "
                    "lora_A/lora_B) and LoHa (hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b) adapters");
      }
    }
    if (ends_with(t.name, ".hada_w1_a")) {
      const std::string key = t.name.substr(0, t.name.size() - std::string(".hada_w1_a").size());
      LoraLayer layer = read_loha(file, key, used);
      std::tie(layer.component, layer.module) = locate(key, path);
      layer.key = key;
      out.layers.push_back(std::move(layer));
      continue;
    }
    const FactorNames* names = nullptr;
    for (const FactorNames& candidate : kFactorNames) {
      if (ends_with(t.name, candidate.down)) names = &candidate;
    }
    if (!names) continue;
    const std::string key = t.name.substr(0, t.name.size() - std::string(names->down).size());
    const TensorInfo* up = file.find(key + names->up);
    if (!up) throw Error(path + ": '" + t.name + "' has no '" + key + names->up + "'");
    LoraLayer layer;
    std::tie(layer.component, layer.module) = locate(key, path);
    layer.key = key;
    layer.rank = t.shape.empty() ? 0 : t.shape[0];
    layer.in = layer.rank ? t.numel() / layer.rank : 0;
    layer.out = up->shape.empty() ? 0 : up->shape[0];
    // A 1x1 convolution's factors may come as [rank, in, 1, 1] and [out, rank, 1, 1].
    if (layer.rank <= 0 || layer.in <= 0 || layer.out <= 0 || up->numel() != layer.out * layer.rank) {
      throw Error(path + ": '" + up->name + "' " + shape_string(up->shape) + " does not follow '" + t.name + "' " +
                  shape_string(t.shape) + " (expected [out, rank] after [rank, in])");
    }
    layer.down = floats_of(file, t);
    layer.up = floats_of(file, *up);
    used.insert(t.name);
    used.insert(up->name);
    layer.scale = alpha_scale(file, key, layer.rank, used);
    out.layers.push_back(std::move(layer));
  }
  for (const TensorInfo& t : file.tensors()) {
    if (!used.count(t.name)) {
      throw Error(path + ": '" + t.name + "' is not part of a LoRA layer (lora_down/lora_up/alpha, lora_A/lora_B, "
                  "hada_w1_a/hada_w1_b/hada_w2_a/hada_w2_b)");
    }
  }
  if (out.layers.empty()) throw Error(path + ": holds no LoRA layers");
  return out;
}

namespace {

// out[rows, cols] += scale x up[rows, rank] down[rank, cols], row by row in f32.
void add_product(const float* up, const float* down, int64_t rows, int64_t rank, int64_t cols, float scale, float* out) {
#pragma omp parallel for schedule(static) if (rows * rank * cols > 1 << 20)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = out + r * cols;
    for (int64_t c = 0; c < rank; ++c) {
      const float u = up[r * rank + c] * scale;
      if (u == 0.0f) continue;
      const float* d = down + c * cols;
      for (int64_t k = 0; k < cols; ++k) row[k] += u * d[k];
    }
  }
}

// One adapter layer matched to the model part it updates, at its scale.
struct Update {
  const LayerPart* part;
  const LoraLayer* layer;
  float scale;  // strength x the layer's alpha / dim
};

struct Matches {
  std::vector<Update> updates;  // in the order the adapters give them; none at strength 0
  std::vector<std::string> unmatched;  // "FILE: KEY"
  size_t matched = 0;
};

Matches match_layers(const std::vector<LayerPart>& parts, const std::vector<WeightedLora>& adapters,
                     LoraComponent component) {
  std::map<std::string, const LayerPart*> by_name;
  for (const LayerPart& part : parts) {
    for (const std::string& name : part.names) by_name.emplace(flattened(name), &part);
  }
  Matches out;
  for (const WeightedLora& adapter : adapters) {
    for (const LoraLayer& layer : adapter.file->layers) {
      if (layer.component != component) continue;
      const auto it = by_name.find(layer.module);
      if (it == by_name.end()) {
        out.unmatched.push_back(adapter.file->path + ": " + layer.key);
        continue;
      }
      const LayerPart& part = *it->second;
      if (layer.in != part.cols || layer.out != part.rows) {
        throw Error(adapter.file->path + ": '" + layer.key + "' updates a [" + std::to_string(layer.out) + ", " +
                    std::to_string(layer.in) + "] weight, but the model's '" + part.names.front() + "' is [" +
                    std::to_string(part.rows) + ", " + std::to_string(part.cols) + "]");
      }
      ++out.matched;
      if (adapter.strength != 0.0f) out.updates.push_back({&part, &layer, adapter.strength * layer.scale});
    }
  }
  return out;
}

}  // namespace

LowRankAdapters::LowRankAdapters(const std::vector<LayerPart>& parts, const std::vector<WeightedLora>& adapters,
                                 LoraComponent component, const Accelerator& accel) {
  Matches matches = match_layers(parts, adapters, component);
  unmatched_ = std::move(matches.unmatched);
  matched_ = matches.matched;
  // Each layer's updates, in the order the adapters give them.
  std::map<const void*, std::vector<Update>> updates;
  for (const Update& u : matches.updates) updates[u.part->layer].push_back(u);
  for (const auto& [layer, list] : updates) {
    const LayerPart& whole = *list.front().part;
    const int64_t cols = whole.cols, rows = whole.layer_rows;
    int64_t rank = 0;
    for (const Update& u : list) rank += u.layer->rank;
    // The factors of all updates side by side: down [rank, cols] stacked,
    // up [rows, rank] with each update's scaled rows in its part's rows.
    std::vector<float> down, up(static_cast<size_t>(rows * rank), 0.0f);
    int64_t column = 0;
    for (const Update& u : list) {
      down.insert(down.end(), u.layer->down.begin(), u.layer->down.end());
      for (int64_t r = 0; r < u.part->rows; ++r) {
        for (int64_t c = 0; c < u.layer->rank; ++c) {
          up[static_cast<size_t>((u.part->first_row + r) * rank + column + c)] =
              u.layer->up[static_cast<size_t>(r * u.layer->rank + c)] * u.scale;
        }
      }
      column += u.layer->rank;
    }
    if (whole.float_weight.data) {
      // W + up x down, in f32 whatever the files' dtypes.
      std::vector<float>& merged = floats_.emplace_back(whole.float_weight.data, whole.float_weight.data + rows * cols);
      add_product(up.data(), down.data(), rows, rank, cols, 1.0f, merged.data());
      layers_.merged.emplace(layer, runtime::FloatWeight{merged.data(), rows, cols});
      continue;
    }
    // 8-bit S: the down factor quantized per row (each adapter's rows keep
    // their own scales) and packed, the up factor kept as it is.
    std::vector<int8_t>& q = int8_.emplace_back(down.size());
    std::vector<float>& scales = floats_.emplace_back(static_cast<size_t>(rank));
    quantize_rows_8bit_s(down.data(), static_cast<size_t>(rank), static_cast<size_t>(cols), q.data(), scales.data());
    const PackedWeight* packed_down = packed_.emplace_back(accel.pack({q.data(), scales.data(), rank, cols})).get();
    const std::vector<float>& kept_up = floats_.emplace_back(std::move(up));
    layers_.branches.emplace(layer, runtime::LowRankBranch{packed_down, {kept_up.data(), rows, rank}});
  }
}

StoredUpdates::StoredUpdates(const std::vector<LayerPart>& parts, const std::vector<WeightedLora>& adapters,
                             LoraComponent component) {
  Matches matches = match_layers(parts, adapters, component);
  unmatched_ = std::move(matches.unmatched);
  matched_ = matches.matched;
  for (const Update& u : matches.updates) {
    Tensor& t = tensors_[{u.part->file, u.part->tensor}];
    t.push_back({u.part->tensor_row, u.part->rows, u.layer->rank, u.layer->down, u.layer->up, u.scale});
  }
}

void StoredUpdates::add(const Tensor& updates, int64_t first_row, int64_t rows, int64_t cols, float* values) {
  for (const Rows& u : updates) {
    const int64_t begin = std::max(first_row, u.first_row), end = std::min(first_row + rows, u.first_row + u.rows);
    if (begin >= end) continue;
    add_product(u.up.data() + (begin - u.first_row) * u.rank, u.down.data(), end - begin, u.rank, cols, u.scale,
                values + (begin - first_row) * cols);
  }
}

LoraMatch::LoraMatch(const std::vector<LayerPart>& parts, const std::vector<WeightedLora>& adapters,
                     LoraComponent component) {
  Matches matches = match_layers(parts, adapters, component);
  unmatched_ = std::move(matches.unmatched);
  matched_ = matches.matched;
}

}  // namespace tiledraw::models
