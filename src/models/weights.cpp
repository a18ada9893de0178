#include "models/weights.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw::models {

int linear(runtime::Graph& g, int x, const LinearWeights& w, Activation activation) {
  const runtime::LowRankBranch* branch = g.low_rank_branch(w.identity());
  if (!branch) {
    const runtime::FloatWeight* merged = g.merged_weight(w.identity());
    const int y = w.weight ? g.linear(x, *w.weight, w.bias, activation)
                           : g.linear(x, merged ? *merged : w.float_weight, w.bias, activation);
    g.label(y, w.name);
    return y;
  }
  // An adapter beside the 8-bit S layer: its update, added in the layer's
  // epilogue (the base weights stay as they are), then the activation.
  const int update = g.linear(g.linear(x, *branch->down, nullptr), branch->up, nullptr);
  int y = g.linear_residual(x, *w.weight, w.bias, update);
  g.label(y, w.name);
  if (activation == Activation::Silu) y = g.unary(kernels::Unary::Silu, y);
  if (activation == Activation::GeluTanh) y = g.unary(kernels::Unary::GeluTanh, y);
  return y;
}

kernels::AttentionMath attention_math(const LinearWeights& qkv) {
  return qkv.weight ? kernels::AttentionMath::Bf16Products : kernels::AttentionMath::F32;
}

int conv2d(runtime::Graph& g, int x, const LinearWeights& w, runtime::ConvWindow window) {
  const runtime::FloatWeight* merged = w.weight ? nullptr : g.merged_weight(w.identity());
  const int y = w.weight ? g.conv2d(x, *w.weight, w.bias, window)
                         : g.conv2d(x, merged ? *merged : w.float_weight, w.bias, window);
  g.label(y, w.name);
  const runtime::LowRankBranch* branch = g.low_rank_branch(w.identity());
  if (!branch) return y;
  // An adapter on an 8-bit S convolution (LoCon): its down factor convolves
  // the same window down to the rank, its up factor is a 1x1 convolution back.
  const int update = g.conv2d(g.conv2d(x, *branch->down, nullptr, window), branch->up, nullptr,
                              runtime::ConvWindow::square(1, 1, 0));
  return g.binary(kernels::Binary::Add, y, update);
}

nlohmann::json model_config_json(const SafetensorsFile& file) {
  if (const auto it = file.metadata().find("config"); it != file.metadata().end()) {
    auto json = nlohmann::json::parse(it->second, nullptr, false);
    if (!json.is_object()) throw Error(file.path() + ": metadata 'config' is not a JSON object");
    return json;
  }
  const size_t slash = file.path().rfind('/');
  const std::string beside = (slash == std::string::npos ? std::string() : file.path().substr(0, slash + 1)) + "config.json";
  if (std::ifstream in(beside); in) {
    auto json = nlohmann::json::parse(in, nullptr, false);
    if (!json.is_object()) throw Error(beside + ": not a JSON object");
    return json;
  }
  return nlohmann::json::object();
}

std::vector<std::string> class_names(const SafetensorsFile& file) {
  const auto it = file.metadata().find("class_names");
  if (it == file.metadata().end()) return {};
  const auto json = nlohmann::json::parse(it->second, nullptr, false);
  std::vector<std::string> names;
  if (json.is_array()) {
    for (const auto& name : json) {
      if (!name.is_string()) break;
      names.push_back(name.get<std::string>());
    }
  }
  if (names.size() != (json.is_array() ? json.size() : 1)) {
    throw Error(file.path() + ": metadata 'class_names' is not a JSON list of strings");
  }
  return names;
}

WeightView::WeightView(const SafetensorsFile& file) : WeightView(file, "", {}, model_config_json(file)) {}

WeightView::WeightView(const SafetensorsFile& file, std::string prefix, Rename rename, nlohmann::json config)
    : file_(&file), prefix_(std::move(prefix)), rename_(std::move(rename)), config_(std::move(config)) {}

std::vector<std::string> WeightView::stored_names(const std::string& canonical) const {
  std::vector<std::string> names = rename_ ? rename_(canonical) : std::vector<std::string>{canonical};
  for (std::string& name : names) name = prefix_ + name;
  return names;
}

const TensorInfo* WeightView::find(const std::string& canonical) const {
  const std::vector<std::string> names = stored_names(canonical);
  return names.size() == 1 ? file_->find(names[0]) : nullptr;
}

std::string WeightView::where() const { return file_->path() + (prefix_.empty() ? "" : " (" + prefix_ + "*)"); }

const TensorInfo& require_tensor(const WeightView& view, const std::string& canonical, const std::string& kind,
                                 const std::string& expected) {
  const std::vector<std::string> names = view.stored_names(canonical);
  const TensorInfo* t = names.size() == 1 ? view.file().find(names[0]) : nullptr;
  if (!t) {
    throw Error(view.file().path() + ": not " + kind + ": no tensor '" + (names.empty() ? view.prefix() + canonical : names[0]) +
                "' (" + expected + ")");
  }
  return *t;
}

namespace {

std::vector<std::string> split_parts(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = name.find('.', start)) != std::string::npos; start = dot + 1) parts.push_back(name.substr(start, dot - start));
  parts.push_back(name.substr(start));
  return parts;
}

bool whole_number(const std::string& part) {
  return !part.empty() && part.size() < 10 && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

WeightView::Rename rename_by_rules(std::vector<RenameRule> rules) {
  return [rules = std::move(rules)](const std::string& canonical) -> std::vector<std::string> {
    const std::vector<std::string> parts = split_parts(canonical);
    for (const RenameRule& rule : rules) {
      const std::vector<std::string> pattern = split_parts(rule.canonical);
      if (pattern.size() > parts.size()) continue;
      std::vector<std::string> numbers;
      size_t i = 0;
      for (; i < pattern.size(); ++i) {
        if (pattern[i] == "{}" && whole_number(parts[i])) {
          numbers.push_back(parts[i]);
        } else if (pattern[i] != parts[i]) {
          break;
        }
      }
      if (i < pattern.size()) continue;
      std::string rest;
      for (; i < parts.size(); ++i) rest += "." + parts[i];
      std::vector<std::string> stored;
      for (const std::string& target : rule.stored) {
        std::string name;
        size_t next_number = 0, from = 0;
        for (size_t hole; (hole = target.find("{}", from)) != std::string::npos; from = hole + 2) {
          name += target.substr(from, hole - from) + (next_number < numbers.size() ? numbers[next_number++] : "");
        }
        stored.push_back(name + target.substr(from) + rest);
      }
      return stored;
    }
    return {canonical};
  };
}

WeightStore::WeightStore(const WeightView& view, const Accelerator& accel, Precision precision, std::string kind,
                         std::string expected)
    : view_(view), accel_(accel), precision_(precision), kind_(std::move(kind)), expected_(std::move(expected)) {
  find_8bit_s_weights(view.file());  // validates every 8-bit S pair up front
}

const TensorInfo& WeightStore::stored(const std::string& name) const {
  const TensorInfo* t = view_.file().find(name);
  if (!t) throw Error(view_.file().path() + ": not " + kind_ + ": no tensor '" + name + "' (" + expected_ + ")");
  return *t;
}

const TensorInfo& WeightStore::require(const std::string& name) const { return require_tensor(view_, name, kind_, expected_); }

const float* WeightStore::floats(const std::string& name) { return stored_floats(require(name)); }

runtime::StoredTable WeightStore::stored_table(const std::string& name) const {
  const TensorInfo& t = require(name);
  if (!is_float_dtype(t.dtype)) {
    throw Error(path() + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) + ", expected floats");
  }
  return {view_.file().data(t).data(), t.dtype};
}

const float* WeightStore::stored_floats(const TensorInfo& t) {
  if (const auto it = floats_.find(t.name); it != floats_.end()) return it->second.data();
  if (!is_float_dtype(t.dtype)) {
    throw Error(path() + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) + ", expected floats");
  }
  reserve(static_cast<uint64_t>(t.numel()) * sizeof(float), "'" + t.name + "' as F32");
  auto& out = floats_[t.name];
  out.resize(static_cast<size_t>(t.numel()));
  view_.file().prefetch(t);
  convert_to_f32(t.dtype, view_.file().data(t).data(), out.data(), out.size());
  view_.file().release(t);
  return out.data();
}

const float* WeightStore::stacked_floats(const std::vector<const TensorInfo*>& parts, const std::string& key) {
  if (parts.size() == 1) return stored_floats(*parts[0]);
  auto& out = floats_[key];
  if (out.empty()) {
    uint64_t count = 0;
    for (const TensorInfo* t : parts) count += static_cast<uint64_t>(t->numel());
    reserve(count * sizeof(float), "'" + key + "' stacked");
    for (const TensorInfo* t : parts) {
      const float* part = stored_floats(*t);
      out.insert(out.end(), part, part + t->numel());
    }
  }
  return out.data();
}

Weight8BitS WeightStore::weight_8bit_s(const TensorInfo& values, int64_t cols) const {
  const TensorInfo* scale = view_.file().find(scale_tensor_name(values.name));
  if (!scale) throw Error(path() + ": tensor '" + values.name + "' is I8 but has no '" + scale_tensor_name(values.name) + "'");
  return Weight8BitS{&values, scale, values.shape[0], cols};
}

LinearWeights WeightStore::load_linear(const std::vector<std::string>& prefixes, int64_t first_rows, Bias bias_rule) {
  std::vector<LayerPart> parts;
  LinearWeights w = load_layer(prefixes, first_rows, bias_rule, parts);
  for (LayerPart& part : parts) {
    part.layer = w.identity();
    part.layer_rows = w.out_features();
    part.cols = w.in_features();
    part.float_weight = w.weight ? runtime::FloatWeight{} : w.float_weight;
    part.rows = std::min(part.rows, part.layer_rows - part.first_row);  // a layer of its first rows only
    if (part.rows > 0) layer_parts_.push_back(std::move(part));
  }
  return w;
}

LinearWeights WeightStore::load_layer(const std::vector<std::string>& prefixes, int64_t first_rows, Bias bias_rule,
                                      std::vector<LayerPart>& layer_parts) {
  const SafetensorsFile& file = view_.file();
  std::vector<const TensorInfo*> parts, biases;
  std::vector<std::string> stored_prefixes;
  int64_t rows = 0, cols = -1;
  for (const std::string& prefix : prefixes) {
    const std::vector<std::string> weight_names = view_.stored_names(prefix + ".weight");
    const std::vector<std::string> bias_names = view_.stored_names(prefix + ".bias");
    if (bias_names.size() != weight_names.size()) throw Error(path() + ": '" + prefix + "' has no bias for each weight");
    for (size_t i = 0; i < weight_names.size(); ++i) {
      const TensorInfo& t = stored(weight_names[i]);
      const int64_t part_rows = t.shape.empty() ? 0 : t.shape[0];
      const int64_t part_cols = part_rows ? t.numel() / part_rows : 0;
      if (part_rows == 0 || part_cols == 0) {
        throw Error(path() + ": '" + t.name + "' of shape " + shape_string(t.shape) + " is not a matrix");
      }
      if (!parts.empty() && (part_cols != cols || t.dtype != parts.front()->dtype)) {
        throw Error(path() + ": '" + t.name + "' does not stack with '" + parts.front()->name + "'");
      }
      if (bias_rule == Bias::Required || file.find(bias_names[i])) {
        const TensorInfo& bias = stored(bias_names[i]);
        if (bias.numel() != part_rows) {
          throw Error(path() + ": '" + bias.name + "' does not have " + std::to_string(part_rows) + " values");
        }
        biases.push_back(&bias);
      }
      if (biases.size() != parts.size() + 1 && !biases.empty()) {
        throw Error(path() + ": '" + t.name + "' does not stack with '" + parts.front()->name + "' (a bias for some, not all)");
      }
      // Adapters name a part as it is stored, or by the canonical name when it is stored whole.
      LayerPart part{{t.name.substr(view_.prefix().size(), t.name.size() - view_.prefix().size() - std::string(".weight").size())}};
      if (weight_names.size() == 1 && part.names.front() != prefix) part.names.push_back(prefix);
      part.first_row = rows;
      part.rows = part_rows;
      part.file = path();
      part.tensor = t.name;
      layer_parts.push_back(std::move(part));
      cols = part_cols;
      rows += part_rows;
      parts.push_back(&t);
      stored_prefixes.push_back(t.name.substr(0, t.name.size() - std::string(".weight").size()));
    }
  }
  if (first_rows > rows) {
    throw Error(path() + ": '" + parts.front()->name + "' has " + std::to_string(rows) + " rows, fewer than the " +
                std::to_string(first_rows) + " needed");
  }
  LinearWeights w;
  for (const std::string& prefix : stored_prefixes) w.name += (w.name.empty() ? "" : "+") + prefix;
  // Row-major rows: the first ones are a prefix of the stacked weight, scales and bias.
  const std::string key = stored_prefixes.front() + (parts.size() > 1 ? "+stacked" : "") +
                          (first_rows > 0 ? ":first" + std::to_string(first_rows) : "");
  if (first_rows > 0) rows = first_rows;
  w.bias = biases.empty() ? nullptr : stacked_floats(biases, key + ".bias");
  const bool stored_int8 = holds_8bit_s_values(file, *parts.front());
  if (stored_int8) {
    for (const TensorInfo* t : parts) file.prefetch(*t);
  }

  // The rows as stored: floats (dequantized when the file is 8-bit S), or int8 with scales.
  if (!stored_int8 || precision_ == Precision::Float) {
    if (stored_int8) {
      reserve(static_cast<uint64_t>(rows * cols) * sizeof(float), "'" + key + ".weight' dequantized to F32");
      auto& dequantized = floats_[key + ".weight"];
      for (const TensorInfo* t : parts) {
        const std::vector<float> part = weight_8bit_s(*t, cols).dequantize(file);
        dequantized.insert(dequantized.end(), part.begin(),
                           part.begin() + std::min<int64_t>(t->numel(), rows * cols - static_cast<int64_t>(dequantized.size())));
      }
      w.float_weight = {dequantized.data(), rows, cols};
    } else {
      w.float_weight = {stacked_floats(parts, key + ".weight"), rows, cols};
    }
    if (precision_ != Precision::Int8) return w;
  }

  auto& scales = floats_[key + ".weight_scale"];
  const int8_t* values = nullptr;
  const uint8_t* panels = nullptr;
  if (!stored_int8) {  // quantized at load
    reserve(static_cast<uint64_t>(rows * cols), "'" + key + ".weight' quantized to 8-bit S");
    auto& q = int8_[key];
    q.resize(static_cast<size_t>(rows * cols));
    scales.resize(static_cast<size_t>(rows));
    quantize_rows_8bit_s(w.float_weight.data, static_cast<size_t>(rows), static_cast<size_t>(cols), q.data(), scales.data());
    require_finite_scales(scales.data(), static_cast<size_t>(rows), 0, path() + ": '" + w.name + ".weight'");
    values = q.data();
    w.float_weight = {};
    // Only the 8-bit S rows are used from here on.
    floats_.erase(key + ".weight");
    for (const TensorInfo* t : parts) floats_.erase(t->name);
  } else {
    // Stacked parts, each a whole number of panels, are the stacked weight's
    // panels one after another; the first rows of panels are its first panels.
    const bool stored_panels = weight_8bit_s(*parts.front(), cols).layout() == Layout8BitS::Panels;
    const bool as_panels = stored_panels && fits_panels_8bit_s(rows, cols);
    // Copied only when the stored bytes cannot serve as they are: parts to
    // stack, or panels wanted as rows (some first rows of them).
    const bool unpack = stored_panels && !as_panels;
    int8_t* copy = nullptr;
    if (parts.size() > 1 || unpack) {
      int64_t stored_rows = 0;
      for (const TensorInfo* t : parts) stored_rows += t->shape[0];
      auto& stacked = int8_[key];
      stacked.resize(static_cast<size_t>(stored_rows * cols));
      copy = stacked.data();
    }
    for (const TensorInfo* t : parts) {
      const Weight8BitS part = weight_8bit_s(*t, cols);
      const std::vector<float> part_scales = part.load_scales(file);
      scales.insert(scales.end(), part_scales.begin(), part_scales.end());
      if (!copy) continue;
      if (unpack) {
        panels_to_rows_8bit_s(reinterpret_cast<const uint8_t*>(file.data(*t).data()), part.rows, cols, copy);
      } else {
        std::memcpy(copy, file.data(*t).data(), static_cast<size_t>(t->numel()));
      }
      copy += t->numel();
    }
    scales.resize(static_cast<size_t>(rows));
    const int8_t* stored = int8_.count(key) ? int8_[key].data() : reinterpret_cast<const int8_t*>(file.data(*parts.front()).data());
    if (as_panels) {
      panels = reinterpret_cast<const uint8_t*>(stored);
    } else {
      values = stored;
    }
  }
  // Stored panels read in place are the mapped file's, which the limit does not count.
  const auto reserve_packed = [&] { reserve(static_cast<uint64_t>(rows * cols), "'" + key + ".weight' packed for the accelerator"); };
  if (!panels) reserve_packed();
  try {
    packed_.push_back(accel_.pack({values, scales.data(), rows, cols, panels}));
  } catch (const Error& e) {  // the backend knows the values, not where they came from
    throw Error(path() + ": '" + w.name + ".weight': " + e.what());
  }
  if (panels && !packed_.back()->reads_source()) reserve_packed();
  w.weight = packed_.back().get();
  for (const TensorInfo* t : parts) {
    if (packed_.back()->reads_source() && !int8_.count(key)) {
      mapped_.push_back(t);  // read in place: released with the store
    } else {
      file.release(*t);
    }
  }
  return w;
}

WeightStore::~WeightStore() {
  for (const TensorInfo* t : mapped_) view_.file().release(*t);
}

void WeightStore::reserve(uint64_t bytes, const std::string& what) {
  reserved_.grow(bytes, path() + ": " + what);
}

}  // namespace tiledraw::models
