#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "accel/aligned.h"
#include "runtime/graph.h"
#include "tiledraw/memory.h"
#include "tiledraw/quant8s.h"
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
  int64_t out_features() const { return weight ? weight->n() : float_weight.n; }
  // What a graph's low-rank branches are keyed by.
  const void* identity() const { return weight ? static_cast<const void*>(weight) : float_weight.data; }
};

// A part of a loaded layer, by the names adapters may give it: a layer
// stacked from several tensors (q, k and v) has a part for each, and a part
// may go by several names (canonical and as stored).
struct LayerPart {
  std::vector<std::string> names;  // without the view's prefix
  const void* layer = nullptr;     // LinearWeights::identity()
  int64_t first_row = 0, rows = 0;  // the part's rows in the layer
  int64_t layer_rows = 0, cols = 0;  // the whole layer's output and input widths (a convolution's in x kh x kw)
  runtime::FloatWeight float_weight{};  // the layer's float weight; none when it is 8-bit S
};

// The layer as an op labelled with the layer's name.
int linear(runtime::Graph& graph, int x, const LinearWeights& w, Activation activation = Activation::None);
int conv2d(runtime::Graph& graph, int x, const LinearWeights& w, runtime::ConvWindow window);
// Stride 1, the same padding on every side.
inline int conv2d(runtime::Graph& graph, int x, const LinearWeights& w, int64_t kernel, int64_t padding) {
  return conv2d(graph, x, w, runtime::ConvWindow::square(kernel, 1, padding));
}

// How attention over this projection's output multiplies: in bf16 when the
// projection is 8-bit S (its rounding already exceeds bf16's), else in f32.
kernels::AttentionMath attention_math(const LinearWeights& qkv);

// A model's config: the file's "config" metadata, else the config.json that
// sits beside the weights in a diffusers model folder, else an empty object.
nlohmann::json model_config_json(const SafetensorsFile& file);

// The class names in the file's "class_names" metadata (a JSON list), or none.
std::vector<std::string> class_names(const SafetensorsFile& file);

// Where one model's tensors are: a file, the prefix its names carry there
// ("first_stage_model." in a single-file checkpoint holding several models),
// and a rename from the family's canonical names to the stored ones, so that
// every layout of a family reads through the same names. A canonical name may
// stand for several stored tensors, stacked by rows when loaded (diffusers'
// separate to_q, to_k and to_v for one fused qkv).
class WeightView {
 public:
  // Stored names (without the prefix) for a canonical name; empty when this
  // layout does not store it.
  using Rename = std::function<std::vector<std::string>(const std::string& canonical)>;
  // Implicit: a whole file under the names it stores, with its own config.
  WeightView(const SafetensorsFile& file);  // NOLINT(google-explicit-constructor)
  WeightView(const SafetensorsFile& file, std::string prefix, Rename rename, nlohmann::json config);

  const SafetensorsFile& file() const { return *file_; }
  const std::string& prefix() const { return prefix_; }
  const nlohmann::json& config() const { return config_; }
  // The stored tensors' full names (prefix included), in stacking order.
  std::vector<std::string> stored_names(const std::string& canonical) const;
  // The tensor of a canonical name that maps to one stored tensor, or null.
  const TensorInfo* find(const std::string& canonical) const;
  // The same tensors under a family's own rename.
  WeightView renamed(Rename rename) const { return WeightView(*file_, prefix_, std::move(rename), config_); }
  // For messages: "FILE" or "FILE (model.diffusion_model.*)".
  std::string where() const;

 private:
  const SafetensorsFile* file_;
  std::string prefix_;
  Rename rename_;
  nlohmann::json config_;
};

// The tensor a canonical name stands for, or an error "FILE: not KIND: no
// tensor 'NAME' (EXPECTED)", where `kind` is e.g. "a DiT checkpoint" and
// `expected` lists the layout.
const TensorInfo& require_tensor(const WeightView& view, const std::string& canonical, const std::string& kind,
                                 const std::string& expected);

// Renames by rules: each maps a canonical prefix to stored prefixes, matched
// on whole dot-separated parts, "{}" standing for one whole-number part (the
// numbers fill the stored side's "{}" in order). The first rule that matches
// wins; a name no rule matches is stored as it is.
struct RenameRule {
  std::string canonical;
  std::vector<std::string> stored;
};
WeightView::Rename rename_by_rules(std::vector<RenameRule> rules);

class WeightStore {
 public:
  // `kind` and `expected` word the error for a missing tensor ("FILE: not
  // KIND: no tensor 'NAME' (EXPECTED)"). Names below are canonical.
  WeightStore(const WeightView& view, const Accelerator& accel, Precision precision, std::string kind,
              std::string expected);
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  const WeightView& view() const { return view_; }
  // Every layer loaded so far, part by part, for adapters to find by name.
  const std::vector<LayerPart>& layer_parts() const { return layer_parts_; }
  const std::string& path() const { return view_.file().path(); }
  const TensorInfo& require(const std::string& name) const;
  // A float tensor (F32, F16 or BF16) as F32, converted once.
  const float* floats(const std::string& name);
  // A float tensor as stored, for tables whose rows are converted as they are looked up.
  runtime::StoredTable stored_table(const std::string& name) const;
  // Whether a layer's "<prefix>.bias" must be there: Stable Diffusion's
  // attention projections store none (then LinearWeights::bias is null).
  enum class Bias { Required, IfStored };
  // The layer "<prefix>.weight" with "<prefix>.bias"; several prefixes, or a
  // prefix stored as several tensors, are stacked by rows (all with a bias or none).
  LinearWeights linear(const std::vector<std::string>& prefixes, Bias bias = Bias::Required) {
    return load_linear(prefixes, 0, bias);
  }
  LinearWeights linear(const std::string& prefix, Bias bias = Bias::Required) { return linear(std::vector{prefix}, bias); }
  // Only the layer's first `rows` outputs (the VAE encoder's mean, the first
  // half of its moments): the rest are never loaded or packed.
  LinearWeights linear_first_rows(const std::string& prefix, int64_t rows) {
    return load_linear({prefix}, rows, Bias::Required);
  }

 private:
  // Loads, then records the layer's parts (layer_parts).
  LinearWeights load_linear(const std::vector<std::string>& prefixes, int64_t first_rows, Bias bias_rule);  // 0: every row
  LinearWeights load_layer(const std::vector<std::string>& prefixes, int64_t first_rows, Bias bias_rule,
                           std::vector<LayerPart>& parts);
  Weight8BitS weight_8bit_s(const TensorInfo& values, int64_t cols) const;
  const float* stored_floats(const TensorInfo& t);
  const float* stacked_floats(const std::vector<const TensorInfo*>& parts, const std::string& key);
  // Counts the copies the store makes (floats, int8 rows, packed weights) against the memory limit.
  void reserve(uint64_t bytes, const std::string& what);

  const TensorInfo& stored(const std::string& name) const;  // a stored (full) name

  WeightView view_;
  const Accelerator& accel_;
  Precision precision_;
  std::string kind_, expected_;
  // Filled as soon as they are sized: populated in one call, not zeroed first.
  template <typename T>
  using Buffer = std::vector<T, accel::PopulatedAllocator<T>>;
  std::map<std::string, Buffer<float>> floats_;  // biases, tables, float weights and 8-bit S scales
  std::map<std::string, Buffer<int8_t>> int8_;   // stacked or quantized-at-load 8-bit S rows
  std::vector<std::unique_ptr<PackedWeight>> packed_;
  std::vector<const TensorInfo*> mapped_;  // stored panels the packed weights read in place
  std::vector<LayerPart> layer_parts_;
  MemoryReservation reserved_;
};

}  // namespace tiledraw::models
