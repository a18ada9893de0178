#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/weights.h"
#include "runtime/graph.h"

// Low-rank adapters (LoRA) as people download them, run beside a model's
// layers without touching their weights: kohya-ss / A1111 files (lora_unet_*,
// lora_te_*, lora_te1_*, lora_te2_* with lora_down, lora_up and alpha) and
// diffusers / PEFT files (unet.*.lora_A.weight, lora_B, text_encoder.*,
// text_encoder_2.*), and LyCORIS's LoHa (hada_w1_a, hada_w1_b, hada_w2_a,
// hada_w2_b), read as one low-rank product. A file is read once into its layers' updates, named as
// the file names them; matching them to a model's layers, by the names the
// layers' parts go by (canonical or as stored, with dots or kohya's
// underscores), happens per generation, with the strengths it asks for.
namespace tiledraw::models {

// The model part an adapter layer is for.
enum class LoraComponent { Unet, TextEncoder, TextEncoder2 };

struct LoraLayer {
  LoraComponent component;
  std::string module;  // the module path as the file names it, with underscores for dots
  std::string key;     // the file's key for the layer (without the suffix), for messages
  int64_t rank = 0, in = 0, out = 0;  // in: a convolution's in x kh x kw
  std::vector<float> down, up;        // [rank, in], [out, rank]
  float scale = 1.0f;                 // alpha / dim (the rank, or LoHa's first dim); 1 without an alpha
};

struct LoraFile {
  std::string path;
  std::vector<LoraLayer> layers;
};

// Reads a LoRA file; an Error names the file and key of anything it cannot
// run (unknown formats, shapes that do not chain, non-finite values).
LoraFile read_lora(const std::string& path);

// An adapter file with the strength it is used at.
struct WeightedLora {
  std::shared_ptr<const LoraFile> file;
  float strength = 1.0f;
};

// What one model component's layers run with under a set of adapters: every
// adapter's layers for `component` matched to `parts` (several on one layer,
// or on the q, k and v rows of a fused one, concatenated along the rank).
// An 8-bit S layer gets a branch beside it (runtime::LowRankBranch: the down
// factor quantized to 8-bit S and packed by `accel`, the up factor in f32); a
// float layer gets a copy of its weight with the update merged in. The base weights are never written: a new set of
// adapters is a new object, and dropping it is the un-merge. Graphs built
// with it point into it, so it must outlive them.
class LowRankAdapters {
 public:
  LowRankAdapters(const std::vector<LayerPart>& parts, const std::vector<WeightedLora>& adapters, LoraComponent component,
                  const Accelerator& accel);
  LowRankAdapters(const LowRankAdapters&) = delete;
  LowRankAdapters& operator=(const LowRankAdapters&) = delete;
  const runtime::LayerAdapters* layers() const {
    return layers_.branches.empty() && layers_.merged.empty() ? nullptr : &layers_;
  }
  // The adapter layers no part matched, as "FILE: KEY".
  const std::vector<std::string>& unmatched() const { return unmatched_; }
  size_t matched() const { return matched_; }

 private:
  // Stable addresses: the packed factors and merged weights point at them.
  std::deque<std::vector<float>> floats_;
  std::deque<std::vector<int8_t>> int8_;
  std::vector<std::unique_ptr<PackedWeight>> packed_;
  runtime::LayerAdapters layers_;
  std::vector<std::string> unmatched_;
  size_t matched_ = 0;
};

// Only whether a set of adapters fits one component's parts (an Error for
// a layer of the wrong shape), building nothing: for checking a request.
class LoraMatch {
 public:
  LoraMatch(const std::vector<LayerPart>& parts, const std::vector<WeightedLora>& adapters, LoraComponent component);
  const std::vector<std::string>& unmatched() const { return unmatched_; }
  size_t matched() const { return matched_; }

 private:
  std::vector<std::string> unmatched_;
  size_t matched_ = 0;
};

// A set of adapters matched to one component's parts for baking into a
// checkpoint: each update is kept as its factors, by the file and tensor its
// part is stored in, and added a block of rows at a time as a converter
// reads the tensor.
class StoredUpdates {
 public:
  // One update's rows of a stored tensor: up [rows, rank] x down [rank, cols] x scale.
  struct Rows {
    int64_t first_row, rows, rank;
    std::vector<float> down, up;
    float scale;
  };
  using Tensor = std::vector<Rows>;

  StoredUpdates(const std::vector<LayerPart>& parts, const std::vector<WeightedLora>& adapters, LoraComponent component);
  // By {file, tensor}.
  const std::map<std::pair<std::string, std::string>, Tensor>& tensors() const { return tensors_; }
  const std::vector<std::string>& unmatched() const { return unmatched_; }
  size_t matched() const { return matched_; }

  // Adds a tensor's updates to its rows [first_row, first_row + rows) of `cols` values.
  static void add(const Tensor& updates, int64_t first_row, int64_t rows, int64_t cols, float* values);

 private:
  std::map<std::pair<std::string, std::string>, Tensor> tensors_;
  std::vector<std::string> unmatched_;
  size_t matched_ = 0;
};

}  // namespace tiledraw::models
