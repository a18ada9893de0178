#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/graph.h"
#include "tiledraw/memory.h"
#include "tiledraw/safetensors.h"

// Loading a model's weights from a safetensors file, shared by the model families.
namespace tiledraw::models {

// A linear (or flattened convolution) layer's weights: 8-bit S through the
// accelerator, or float.
struct LinearWeights {
  const PackedWeight* weight = nullptr;
  runtime::FloatWeight float_weight{};
  const float* bias = nullptr;
  std::string name{};  // the tensors' prefix, for messages ("blocks.3.mlp.fc2")
  int64_t in_features() const { return weight ? weight->k() : float_weight.k; }
};

// The layer as an op labelled with the layer's name.
int linear(runtime::Graph& graph, int x, const LinearWeights& w, Activation activation = Activation::None);
int conv2d(runtime::Graph& graph, int x, const LinearWeights& w, int64_t kernel, int64_t padding);

// How attention over this projection's output multiplies: in bf16 when the
// projection is 8-bit S (its rounding already exceeds bf16's), else in f32.
kernels::AttentionMath attention_math(const LinearWeights& qkv);

// A model's config: the file's "config" metadata, else the config.json that
// sits beside the weights in a diffusers model folder, else an empty object.
nlohmann::json model_config_json(const SafetensorsFile& file);

// The tensor `name`, or an error "FILE: not KIND: no tensor 'NAME' (EXPECTED)",
// where `kind` is e.g. "a DiT checkpoint" and `expected` lists the layout.
const TensorInfo& require_tensor(const SafetensorsFile& file, const std::string& name, const std::string& kind,
                                 const std::string& expected);

// The class names in the file's "class_names" metadata (a JSON list), or none.
std::vector<std::string> class_names(const SafetensorsFile& file);

// How matrices run: as the file stores them, or all in float (8-bit S
// dequantized), or all in 8-bit S (float weights quantized at load).
enum class Precision { AsStored, Float, Int8 };
Precision parse_precision(const std::string& name, const std::string& flag);

class WeightStore {
 public:
  // `kind` and `expected` word the error for a missing tensor (require_tensor).
  WeightStore(const SafetensorsFile& file, const Accelerator& accel, Precision precision, std::string kind,
              std::string expected);

  const SafetensorsFile& file() const { return file_; }
  const TensorInfo& require(const std::string& name) const;
  // A float tensor (F32, F16 or BF16) as F32, converted once.
  const float* floats(const std::string& name);
  // The layer "<prefix>.weight" with "<prefix>.bias"; several prefixes are
  // stacked by rows (diffusers' separate to_q, to_k and to_v become one qkv).
  LinearWeights linear(const std::vector<std::string>& prefixes);
  LinearWeights linear(const std::string& prefix) { return linear(std::vector{prefix}); }

 private:
  std::vector<float> scales_of(const TensorInfo& values, int64_t cols) const;
  const float* stacked_floats(const std::vector<std::string>& names, const std::string& key);
  // Counts the copies the store makes (floats, int8 rows, packed weights) against the memory limit.
  void reserve(uint64_t bytes, const std::string& what);

  const SafetensorsFile& file_;
  const Accelerator& accel_;
  Precision precision_;
  std::string kind_, expected_;
  std::map<std::string, std::vector<float>> floats_;  // biases, tables, float weights and 8-bit S scales
  std::map<std::string, std::vector<int8_t>> int8_;   // stacked or quantized-at-load 8-bit S rows
  std::vector<std::unique_ptr<PackedWeight>> packed_;
  MemoryReservation reserved_;
};

}  // namespace tiledraw::models
