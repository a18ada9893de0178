#include "models/weights.h"

#include <fstream>

#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw::models {

int linear(runtime::Graph& g, int x, const LinearWeights& w, Activation activation) {
  const int y = w.weight ? g.linear(x, *w.weight, w.bias, activation) : g.linear(x, w.float_weight, w.bias, activation);
  g.label(y, w.name);
  return y;
}

kernels::AttentionMath attention_math(const LinearWeights& qkv) {
  return qkv.weight ? kernels::AttentionMath::Bf16Products : kernels::AttentionMath::F32;
}

int conv2d(runtime::Graph& g, int x, const LinearWeights& w, int64_t kernel, int64_t padding) {
  const int y = w.weight ? g.conv2d(x, *w.weight, w.bias, kernel, 1, padding)
                         : g.conv2d(x, w.float_weight, w.bias, kernel, 1, padding);
  g.label(y, w.name);
  return y;
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

const TensorInfo& require_tensor(const SafetensorsFile& file, const std::string& name, const std::string& kind,
                                 const std::string& expected) {
  const TensorInfo* t = file.find(name);
  if (!t) throw Error(file.path() + ": not " + kind + ": no tensor '" + name + "' (" + expected + ")");
  return *t;
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

Precision parse_precision(const std::string& name, const std::string& flag) {
  if (name == "auto") return Precision::AsStored;
  if (name == "float") return Precision::Float;
  if (name == "8bit-s" || name == "int8") return Precision::Int8;
  throw Error(flag + ": unknown precision '" + name + "' (expected auto, float or 8bit-s)");
}

WeightStore::WeightStore(const SafetensorsFile& file, const Accelerator& accel, Precision precision, std::string kind,
                         std::string expected)
    : file_(file), accel_(accel), precision_(precision), kind_(std::move(kind)), expected_(std::move(expected)) {
  find_8bit_s_weights(file);  // validates every 8-bit S pair up front
}

const TensorInfo& WeightStore::require(const std::string& name) const {
  return require_tensor(file_, name, kind_, expected_);
}

const float* WeightStore::floats(const std::string& name) {
  if (const auto it = floats_.find(name); it != floats_.end()) return it->second.data();
  const TensorInfo& t = require(name);
  if (!is_float_dtype(t.dtype)) {
    throw Error(file_.path() + ": tensor '" + name + "' is " + std::string(dtype_name(t.dtype)) + ", expected floats");
  }
  reserve(static_cast<uint64_t>(t.numel()) * sizeof(float), "'" + name + "' as F32");
  std::vector<float>& out = floats_[name];
  out.resize(static_cast<size_t>(t.numel()));
  convert_to_f32(t.dtype, file_.data(t).data(), out.data(), out.size());
  return out.data();
}

const float* WeightStore::stacked_floats(const std::vector<std::string>& names, const std::string& key) {
  if (names.size() == 1) return floats(names[0]);
  std::vector<float>& out = floats_[key];
  if (out.empty()) {
    uint64_t count = 0;
    for (const std::string& name : names) count += static_cast<uint64_t>(require(name).numel());
    reserve(count * sizeof(float), "'" + key + "' stacked");
    for (const std::string& name : names) {
      const float* part = floats(name);
      out.insert(out.end(), part, part + require(name).numel());
    }
  }
  return out.data();
}

std::vector<float> WeightStore::scales_of(const TensorInfo& values, int64_t cols) const {
  const TensorInfo* scale = file_.find(scale_tensor_name(values.name));
  if (!scale) throw Error(file_.path() + ": tensor '" + values.name + "' is I8 but has no '" + scale_tensor_name(values.name) + "'");
  return Weight8BitS{&values, scale, values.shape[0], cols}.load_scales(file_);
}

LinearWeights WeightStore::linear(const std::vector<std::string>& prefixes) {
  std::vector<const TensorInfo*> parts;
  std::vector<std::string> weight_names, bias_names;
  int64_t rows = 0, cols = -1;
  for (const std::string& prefix : prefixes) {
    const TensorInfo& t = require(prefix + ".weight");
    const int64_t part_rows = t.shape.empty() ? 0 : t.shape[0];
    const int64_t part_cols = part_rows ? t.numel() / part_rows : 0;
    if (part_rows == 0 || part_cols == 0) {
      throw Error(file_.path() + ": '" + t.name + "' of shape " + shape_string(t.shape) + " is not a matrix");
    }
    if (!parts.empty() && (part_cols != cols || t.dtype != parts.front()->dtype)) {
      throw Error(file_.path() + ": '" + t.name + "' does not stack with '" + parts.front()->name + "'");
    }
    if (require(prefix + ".bias").numel() != part_rows) {
      throw Error(file_.path() + ": '" + prefix + ".bias' does not have " + std::to_string(part_rows) + " values");
    }
    cols = part_cols;
    rows += part_rows;
    parts.push_back(&t);
    weight_names.push_back(t.name);
    bias_names.push_back(prefix + ".bias");
  }
  const std::string key = prefixes.front() + (prefixes.size() > 1 ? "+stacked" : "");
  LinearWeights w;
  for (const std::string& prefix : prefixes) w.name += (w.name.empty() ? "" : "+") + prefix;
  w.bias = stacked_floats(bias_names, key + ".bias");
  const bool stored_int8 = parts.front()->dtype == DType::I8;

  // The rows as stored: floats (dequantized when the file is 8-bit S), or int8 with scales.
  if (!stored_int8 || precision_ == Precision::Float) {
    if (stored_int8) {
      reserve(static_cast<uint64_t>(rows * cols) * sizeof(float), "'" + key + ".weight' dequantized to F32");
      std::vector<float>& dequantized = floats_[key + ".weight"];
      for (const TensorInfo* t : parts) {
        const std::vector<float> scales = scales_of(*t, cols);
        const auto* q = reinterpret_cast<const int8_t*>(file_.data(*t).data());
        for (int64_t r = 0; r < t->shape[0]; ++r) {
          for (int64_t k = 0; k < cols; ++k) dequantized.push_back(static_cast<float>(q[r * cols + k]) * scales[static_cast<size_t>(r)]);
        }
      }
      w.float_weight = {dequantized.data(), rows, cols};
    } else {
      w.float_weight = {stacked_floats(weight_names, key + ".weight"), rows, cols};
    }
    if (precision_ != Precision::Int8) return w;
  }

  std::vector<float>& scales = floats_[key + ".weight_scale"];
  const int8_t* values = nullptr;
  if (!stored_int8) {  // quantized at load
    reserve(static_cast<uint64_t>(rows * cols), "'" + key + ".weight' quantized to 8-bit S");
    std::vector<int8_t>& q = int8_[key];
    q.resize(static_cast<size_t>(rows * cols));
    scales.resize(static_cast<size_t>(rows));
    quantize_rows_8bit_s(w.float_weight.data, static_cast<size_t>(rows), static_cast<size_t>(cols), q.data(), scales.data());
    require_finite_scales(scales.data(), static_cast<size_t>(rows), 0, file_.path() + ": '" + w.name + ".weight'");
    values = q.data();
    w.float_weight = {};
  } else {
    for (const TensorInfo* t : parts) {
      const std::vector<float> part = scales_of(*t, cols);
      scales.insert(scales.end(), part.begin(), part.end());
      if (parts.size() > 1) {
        const auto* bytes = reinterpret_cast<const int8_t*>(file_.data(*t).data());
        int8_[key].insert(int8_[key].end(), bytes, bytes + t->numel());
      }
    }
    values = parts.size() > 1 ? int8_[key].data() : reinterpret_cast<const int8_t*>(file_.data(*parts.front()).data());
  }
  reserve(static_cast<uint64_t>(rows * cols), "'" + key + ".weight' packed for the accelerator");
  try {
    packed_.push_back(accel_.pack({values, scales.data(), rows, cols}));
  } catch (const Error& e) {  // the backend knows the values, not where they came from
    throw Error(file_.path() + ": '" + w.name + ".weight': " + e.what());
  }
  w.weight = packed_.back().get();
  return w;
}

void WeightStore::reserve(uint64_t bytes, const std::string& what) {
  reserved_.grow(bytes, file_.path() + ": " + what);
}

}  // namespace tiledraw::models
